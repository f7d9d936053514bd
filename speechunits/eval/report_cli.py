"""``speechunits results-table``: RESULTS.md (+ plot) from several eval-boundaries reports.

Example::

    speechunits results-table --out exp/sylber/RESULTS.md --plot exp/sylber/scores.png \\
        --title "Sylber on synthetic test-clean" bootstrap=exp/eval/boot.json stage1=exp/eval/s1.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speechunits.errors import ConfigError
from speechunits.eval.report import write_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``speechunits results-table``."""
    parser.add_argument("reports", nargs="+", metavar="NAME=REPORT.json", help="system name and its JSON report")
    parser.add_argument("--out", required=True, type=Path, help="markdown file to write (e.g. RESULTS.md)")
    parser.add_argument("--title", default="Syllable boundary evaluation")
    parser.add_argument("--notes", default="", help="paragraph placed under the title")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the scores as a PNG bar chart here")


def run(args: argparse.Namespace) -> int:
    """Write the table (and plot) and print it."""
    rows = []
    for item in args.reports:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(None, f"expected NAME=REPORT.json, got {item!r}")
        rows.append((name, path))
    print(write_results(args.out, rows, title=args.title, notes=args.notes, plot=args.plot), end="")
    return 0
