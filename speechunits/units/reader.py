"""Streaming reader of ``units.jsonl`` (and of a shard's ``units.JOB.jsonl``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from speechunits.errors import UnitFormatError
from speechunits.units.meta import UNITS_NAME, UnitSetMeta, read_meta
from speechunits.units.record import UnitRecord, parse_line

PathLike = str | os.PathLike[str]


def iter_unit_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of every line (1-based); a blank line is an error."""
    path = Path(path)
    if not path.is_file():
        raise UnitFormatError(path, "missing units file")
    with open(path, encoding="utf-8", newline="\n") as f:
        lineno = 0
        try:
            for lineno, raw in enumerate(f, 1):
                text = raw.rstrip("\n")
                if not text.strip():
                    raise UnitFormatError(path, "empty line (one JSON object per line expected)", lineno)
                yield lineno, text
        except UnicodeDecodeError as err:
            raise UnitFormatError(path, f"not UTF-8 ({err.reason})", lineno + 1) from None


def read_unit_file(path: PathLike, meta: UnitSetMeta | None, *, validate: bool = True) -> Iterator[UnitRecord]:
    """Records of one units file; with ``validate``, every rule plus strictly increasing ids."""
    path = Path(path)
    prev: str | None = None
    for lineno, text in iter_unit_lines(path):
        rec = parse_line(text, meta, path, lineno, validate=validate)
        if validate and prev is not None and not rec.id > prev:
            problem = "duplicate" if rec.id == prev else "not sorted:"
            raise UnitFormatError(path, f"{problem} id {rec.id!r} after {prev!r} (ids must be strictly increasing)", lineno)
        prev = rec.id
        yield rec


def read_units(unit_dir: PathLike, *, validate: bool = True) -> Iterator[UnitRecord]:
    """Stream the records of a unit set, line by line, in id order.

    Raises UnitFormatError (``units.jsonl:LINE: problem``) on the first malformed line; with
    ``validate=False`` only JSON syntax and field types are checked (for speed).
    """
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    yield from read_unit_file(unit_dir / UNITS_NAME, meta, validate=validate)
