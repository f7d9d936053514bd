"""Checks the chaos jobs share: a sharded job's summary line against its files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

SUMMARY = re.compile(r"^(?P<verb>[\w-]+): wrote (?P<out>\S+): (?P<written>\d+) utterance\(s\) in .*?, "
                     r"(?P<bad>\d+) in bad_utts\.txt", re.M)
def summary_check(out: str, count_written: Callable[[Path], int]) -> Callable[[Path, str], list[str]]:
    """A sharded job's accounting: the summary line's counts (when the run printed one) equal the
    files: ``count_written(out dir)`` written items and the lines of ``bad_utts.txt``."""
    def check(root: Path, stderr: str) -> list[str]:
        problems = []
        bad_file = root / out / "bad_utts.txt"
        bad = len(bad_file.read_text(encoding="utf-8").splitlines()) if bad_file.is_file() else -1
        written = count_written(root / out)
        for m in SUMMARY.finditer(stderr):
            if int(m["bad"]) != bad or int(m["written"]) != written:
                problems.append(f"summary line says {m['written']} written + {m['bad']} bad, the files hold "
                                f"{written} + {bad}: {m.group(0)!r}")
        return problems
    return check


def lines_of(name: str) -> Callable[[Path], int]:
    return lambda out: len((out / name).read_text(encoding="utf-8").splitlines())
