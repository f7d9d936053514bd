"""Exporters from a unit set to the formats other toolkits read (all written atomically).

==========  =========================================================  ===================
format      one line per utterance (in id order)                       default ``expand``
==========  =========================================================  ===================
kaldi       ``utt u1 u2 ...``                                          False
fairseq     ``utt|u1 u2 ...`` (fairseq/textlesslib speech2unit)        False
resynth     ``{'audio': '/abs/a.wav', 'hubert': 'u1 u2 ...', 'duration': 1.23}``  True
textless    ``PREFIX.units``: ``u1 u2 ...``; ``PREFIX.durations``: frames per token  (runs)
==========  =========================================================  ===================

``expand=False`` writes one id per token (consecutive frame repeats are already merged into
one token by the format). ``expand=True`` writes one id per frame: each token repeated
``end - start`` times, gaps between tokens filled with the ``silence`` special id (an error
when the unit set has gaps and no silence id). The textless pair writes runs: a gap becomes
a silence token when a silence id exists and is an error otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from speechunits.errors import UnitFormatError
from speechunits.io_utils import atomic_path
from speechunits.units.convert import runs_to_frames
from speechunits.units.meta import UNITS_NAME, UnitSetMeta, read_meta
from speechunits.units.reader import read_units
from speechunits.units.record import UnitRecord

PathLike = str | os.PathLike[str]

FORMATS = ("kaldi", "fairseq", "resynth", "textless")


def _quantized(unit_dir: Path) -> Iterator[tuple[int, UnitRecord]]:
    for lineno, rec in enumerate(read_units(unit_dir), 1):
        if rec.units is None:
            raise UnitFormatError(unit_dir / UNITS_NAME, f"utterance {rec.id!r} has no 'units': the unit set is not "
                                                         "quantized (run k-means quantization before exporting)", lineno)
        yield lineno, rec


def _silence(meta: UnitSetMeta, rec: UnitRecord, lineno: int) -> int:
    sil = meta.special_ids.get("silence")
    if sil is None:
        where = meta.unit_dir / UNITS_NAME if meta.unit_dir else None
        raise UnitFormatError(where, f"utterance {rec.id!r} has gaps between tokens and meta.json defines no "
                                     "'silence' special id to fill them", lineno)
    return sil


def _has_gaps(rec: UnitRecord) -> bool:
    return bool(rec.starts) and (rec.starts[0] > 0 or any(s > e for s, e in zip(rec.starts[1:], rec.ends[:-1])))


def token_ids(meta: UnitSetMeta, rec: UnitRecord, expand: bool, lineno: int = 0) -> list[int]:
    """Ids of one record: per token, or per frame (``expand``) from frame 0 to the last end."""
    assert rec.units is not None
    if not expand:
        return list(rec.units)
    sil = _silence(meta, rec, lineno) if _has_gaps(rec) else None
    return runs_to_frames(rec.units, rec.starts, rec.ends, None, sil).tolist()


def runs_with_silence(meta: UnitSetMeta, rec: UnitRecord, lineno: int = 0) -> tuple[list[int], list[int]]:
    """(units, durations in frames) covering ``[0, last end)``; gaps become silence tokens."""
    assert rec.units is not None
    units: list[int] = []
    durs: list[int] = []
    pos = 0
    for u, s, e in zip(rec.units, rec.starts, rec.ends):
        if s > pos:
            units.append(_silence(meta, rec, lineno))
            durs.append(s - pos)
        units.append(u)
        durs.append(e - s)
        pos = e
    return units, durs


def _join(ids: list[int]) -> str:
    return " ".join(map(str, ids))


def _write_lines(path: Path, lines: Iterator[str]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n


def export_kaldi(unit_dir: PathLike, out: PathLike, *, expand: bool = False) -> int:
    """Kaldi ``text``-style lines ``utt u1 u2 ...``; returns the number of lines."""
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    return _write_lines(Path(out), (f"{rec.id} {_join(token_ids(meta, rec, expand, n))}".rstrip()
                                    for n, rec in _quantized(unit_dir)))


def export_fairseq(unit_dir: PathLike, out: PathLike, *, expand: bool = False) -> int:
    """fairseq/textlesslib unit lines ``utt|u1 u2 ...``; returns the number of lines."""
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    return _write_lines(Path(out), (f"{rec.id}|{_join(token_ids(meta, rec, expand, n))}"
                                    for n, rec in _quantized(unit_dir)))


def export_resynth(unit_dir: PathLike, out: PathLike, *, expand: bool = True, key: str = "hubert") -> int:
    """speech-resynthesis manifest lines ``{'audio': path, key: 'u1 u2 ...', 'duration': secs}``.

    ``audio`` is the resolved absolute path; ``duration`` is ``num_samples / sample_rate``.
    Lines are Python dict literals, as speech-resynthesis reads them.
    """
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)

    def lines() -> Iterator[str]:
        for n, rec in _quantized(unit_dir):
            yield repr({"audio": str(meta.resolve_audio(rec)), key: _join(token_ids(meta, rec, expand, n)),
                        "duration": rec.duration})

    return _write_lines(Path(out), lines())


def export_textless(unit_dir: PathLike, prefix: PathLike) -> tuple[Path, Path]:
    """Parallel ``PREFIX.units`` (ids per token) and ``PREFIX.durations`` (frames per token).

    Line ``k`` of both files is the ``k``-th utterance of ``units.jsonl`` (id order).
    """
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    prefix = Path(prefix)
    units_path = prefix.with_name(prefix.name + ".units")
    durs_path = prefix.with_name(prefix.name + ".durations")
    with atomic_path(units_path) as tu, atomic_path(durs_path) as td:
        with open(tu, "w", encoding="utf-8", newline="\n") as fu, open(td, "w", encoding="utf-8", newline="\n") as fd:
            for n, rec in _quantized(unit_dir):
                units, durs = runs_with_silence(meta, rec, n)
                fu.write(_join(units) + "\n")
                fd.write(_join(durs) + "\n")
    return units_path, durs_path


def export_units(unit_dir: PathLike, fmt: str, out: PathLike, *, expand: bool | None = None,
                 key: str = "hubert") -> list[Path]:
    """Dispatch to one exporter by name; ``expand=None`` takes the format's default."""
    if fmt == "kaldi":
        export_kaldi(unit_dir, out, expand=bool(expand))
    elif fmt == "fairseq":
        export_fairseq(unit_dir, out, expand=bool(expand))
    elif fmt == "resynth":
        export_resynth(unit_dir, out, expand=True if expand is None else expand, key=key)
    elif fmt == "textless":
        if expand:
            raise UnitFormatError(None, "the textless .units/.durations pair stores runs; --expand does not apply")
        return list(export_textless(unit_dir, out))
    else:
        raise UnitFormatError(None, f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return [Path(out)]
