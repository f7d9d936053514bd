"""Frame-level training targets of HuBERT: k-means ids per 20 ms frame, read from frame unit sets.

Targets are ordinary unit sets of ``kind="frame"`` (``speechunits frame-units`` writes them, from
MFCCs for iteration 1 or from a layer of a trained model for iteration 2), so they can be
inspected, validated and reused like any other units. Several sets (one per data dir) combine
when they were quantized with the same codebook.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.units import read_meta, read_units, runs_to_frames

PathLike = str | os.PathLike[str]


@dataclass
class FrameTargets:
    """Per-utterance frame ids, the number of classes and the codebook that made them."""

    frames: dict[str, np.ndarray]
    num_classes: int
    hop: int
    sample_rate: int
    codebook_hash: str | None
    left_out: dict[str, str] = field(default_factory=dict)  # id -> reason, from the sets' bad_utts.txt


def read_left_out(unit_dir: Path) -> dict[str, str]:
    """Utterances ``frame-units`` left out of ``unit_dir`` (``bad_utts.txt``: ``<id>\\t<reason>``)."""
    path = unit_dir / "bad_utts.txt"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, _, reason = line.partition("\t")
            out[utt.strip()] = reason.strip()
    return out


def _num_classes(unit_dir: Path, producer: dict, vocab_size: int | None) -> int:
    book = producer.get("codebook") or {}
    if book.get("k"):
        return int(book["k"])
    if vocab_size:
        return int(vocab_size)
    raise UnitFormatError(unit_dir / "meta.json", "frame unit set records neither a codebook k nor a vocab_size")


def load_frame_targets(unit_dirs: PathLike | Sequence[PathLike]) -> FrameTargets:
    """Read one frame unit set, or several made with the same codebook, into per-frame ids."""
    dirs = [Path(unit_dirs)] if isinstance(unit_dirs, (str, os.PathLike)) else [Path(d) for d in unit_dirs]
    if not dirs:
        raise UnitFormatError(None, "no target unit sets given")
    frames: dict[str, np.ndarray] = {}
    first: FrameTargets | None = None
    for unit_dir in dirs:
        meta = read_meta(unit_dir)
        if meta.kind != "frame":
            raise UnitFormatError(unit_dir / "meta.json", f"HuBERT targets must be a frame unit set, got kind "
                                                         f"{meta.kind!r} (make them with speechunits frame-units)")
        book = (meta.producer.get("codebook") or {}).get("hash")
        current = FrameTargets({}, _num_classes(unit_dir, meta.producer, meta.vocab_size), meta.hop,
                               meta.sample_rate, book)
        if first is None:
            first = current
        elif (current.num_classes, current.hop, current.sample_rate, current.codebook_hash) != (
                first.num_classes, first.hop, first.sample_rate, first.codebook_hash):
            raise UnitFormatError(unit_dir, f"targets differ from {dirs[0]} (classes, hop, rate or codebook); "
                                            "quantize every data dir with the same codebook")
        first.left_out.update(read_left_out(unit_dir))
        for rec in read_units(unit_dir):
            if rec.id in frames:
                raise UnitFormatError(unit_dir, f"utterance {rec.id!r} has targets in two unit sets")
            if rec.units is None:
                raise UnitFormatError(unit_dir, f"utterance {rec.id!r} has no unit ids")
            ids = runs_to_frames(rec.units, rec.starts, rec.ends)
            if len(ids) and (ids.min() < 0 or ids.max() >= current.num_classes):
                raise UnitFormatError(unit_dir, f"utterance {rec.id!r} has ids outside 0..{current.num_classes - 1}")
            frames[rec.id] = ids
    assert first is not None
    first.frames = frames
    return first


def crop_targets(ids: np.ndarray, frame_offset: int, num_frames: int, ignore: int = -100) -> np.ndarray:
    """``ids[frame_offset : frame_offset + num_frames]``, padded with ``ignore`` where the targets end early."""
    out = np.full(num_frames, ignore, dtype=np.int64)
    part = ids[frame_offset: frame_offset + num_frames]
    out[: len(part)] = part
    return out
