"""The symbols file ``phonemize`` writes: one ``{"id", "text", "symbols"}`` JSON line per utterance.

Training reads symbols from this file instead of running the front end itself, so a corpus is
phonemized once and every run sees the same inputs. Its side files: ``<stem>.bad.txt``
(``id<TAB>reason`` of the utterances left out) and ``<stem>.meta.json`` (front end, counts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from speechunits.data.jsonl import json_object_line
from speechunits.errors import ConfigError, ManifestError
from speechunits.io_utils import atomic_path

PathLike = str | os.PathLike[str]


def _check_out(path: PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ConfigError(path, "a symbols file is named *.jsonl")
    return path


def bad_path(path: PathLike) -> Path:
    """``OUT.jsonl`` -> ``OUT.bad.txt``."""
    return _check_out(path).with_suffix(".bad.txt")


def meta_path(path: PathLike) -> Path:
    """``OUT.jsonl`` -> ``OUT.meta.json``."""
    return _check_out(path).with_suffix(".meta.json")


def write_symbols(path: PathLike, rows: Iterable[tuple[str, str, list[str]]]) -> int:
    """Write ``(id, text, symbols)`` rows, sorted by id, atomically; returns their number."""
    rows = sorted(rows, key=lambda r: r[0])
    with atomic_path(_check_out(path)) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for utt_id, text, symbols in rows:
                f.write(json.dumps({"id": utt_id, "text": text, "symbols": symbols}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return len(rows)


def _parse(path: Path, lineno: int, raw: str) -> tuple[str, list[str]]:
    obj = json_object_line(path, lineno, raw)
    utt_id, symbols = obj.get("id"), obj.get("symbols")
    if not isinstance(utt_id, str) or not utt_id:
        raise ManifestError(path, f"field 'id' must be a non-empty string, found {utt_id!r}", lineno)
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s for s in symbols):
        raise ManifestError(path, f"field 'symbols' of {utt_id!r} must be a non-empty list of non-empty strings, "
                                  f"found {str(symbols)[:100]}", lineno)
    return utt_id, symbols


def read_symbols(path: PathLike) -> dict[str, list[str]]:
    """Utterance id -> symbols of a symbols file; ManifestError with ``file:line`` on a malformed
    line or a repeated id, and when the file holds no utterance."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "symbols file does not exist (made by `speechunits phonemize`)"
                            if not path.exists() else "expected a file")
    out: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 may sit in a text
    except UnicodeDecodeError as err:
        raise ManifestError(path, f"expected UTF-8 text ({err})") from None
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        utt_id, symbols = _parse(path, lineno, raw)
        if utt_id in first:
            raise ManifestError(path, f"duplicate id {utt_id!r} (first on line {first[utt_id]})", lineno)
        first[utt_id] = lineno
        out[utt_id] = symbols
    if not out:
        raise ManifestError(path, "symbols file holds no utterances")
    return out
