"""Whole-unit-set validation: meta, every line, counts, embeddings and (optionally) audio."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.units.embeddings import EMB_DIR, INDEX_NAME, EmbeddingStore
from speechunits.units.meta import META_NAME, UNITS_NAME, read_meta
from speechunits.units.reader import read_unit_file

PathLike = str | os.PathLike[str]


@dataclass
class ValidationReport:
    """What :func:`validate_unit_set` checked and counted."""

    unit_dir: str
    kind: str
    frame_rate: str
    num_utterances: int = 0
    num_tokens: int = 0
    num_quantized: int = 0
    seconds: float = 0.0
    vocab_size: int | None = None
    vocab_used: int = 0
    embedding_dim: int | None = None
    has_embeddings: bool = False
    audio_checked: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "tokens_per_second": self.tokens_per_second}

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"unit set      {self.unit_dir}: OK",
            f"kind          {self.kind} at {self.frame_rate} frames/s",
            f"utterances    {self.num_utterances} ({self.seconds:.1f} s of audio)",
            f"tokens        {self.num_tokens} ({self.tokens_per_second:.2f} tokens/s)",
            f"quantized     {self.num_quantized} of {self.num_utterances} utterances have unit ids"
            + (f"; {self.vocab_used} of {self.vocab_size} ids used" if self.vocab_size else ""),
            f"embeddings    {'dim ' + str(self.embedding_dim) if self.has_embeddings else 'none'}",
        ]
        if self.audio_checked:
            lines.append(f"audio         {self.audio_checked} files exist with matching lengths")
        lines += [f"warning       {w}" for w in self.warnings]
        return "\n".join(lines)


def validate_unit_set(unit_dir: PathLike, *, check_audio: bool = False) -> ValidationReport:
    """Check a unit set completely; raises UnitFormatError (file:line) on the first problem.

    Checks ``meta.json``; every line of ``units.jsonl`` (fields, types, segment rules, ids
    strictly sorted, unit ids < vocab_size); the counts recorded in ``meta.json``; with
    embeddings, an index entry per utterance whose row count equals its token count inside
    an intact float16 shard of ``embedding_dim`` columns, every value finite; with ``check_audio``, that each
    audio file exists and has the recorded ``num_samples``/``sample_rate``.
    """
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    units_path = unit_dir / UNITS_NAME
    report = ValidationReport(unit_dir=str(unit_dir), kind=meta.kind, frame_rate=meta.frame_rate,
                              vocab_size=meta.vocab_size, embedding_dim=meta.embedding_dim)
    index_path = unit_dir / EMB_DIR / INDEX_NAME
    store = EmbeddingStore(unit_dir, meta.embedding_dim) if index_path.is_file() else None
    if store is not None and meta.embedding_dim is None:
        raise UnitFormatError(unit_dir / META_NAME, f"embedding_dim is null but {index_path} exists")
    if store is None and meta.embedding_dim is not None:
        raise UnitFormatError(index_path, f"meta.json declares embedding_dim {meta.embedding_dim} but the "
                                          "embeddings index is missing")
    report.has_embeddings = store is not None
    used: Counter[int] = Counter()
    audio_info = None
    if check_audio:
        from speechunits.audio import audio_info
    for lineno, rec in enumerate(read_unit_file(units_path, meta), 1):
        report.num_utterances += 1
        report.num_tokens += rec.num_tokens
        report.seconds += rec.duration
        if rec.units is not None:
            report.num_quantized += 1
            used.update(rec.units)
        if store is not None:
            if rec.id not in store:
                raise UnitFormatError(index_path, f"no embeddings for utterance {rec.id!r} ({UNITS_NAME} line {lineno})")
            rows = store.get(rec.id)
            if rows.shape[0] != rec.num_tokens:
                raise UnitFormatError(index_path, f"utterance {rec.id!r}: {rows.shape[0]} embedding rows for "
                                                  f"{rec.num_tokens} tokens ({UNITS_NAME} line {lineno})")
            if not np.isfinite(rows).all():  # the writer refuses them (as_embedding_rows): a damaged shard
                name, start, _ = store.index[rec.id]
                row = start + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
                raise UnitFormatError(store.dir / name, f"utterance {rec.id!r}: non-finite embedding in row {row} "
                                                        "(NaN/inf; damaged shard?)")
        if audio_info is not None:
            path = meta.resolve_audio(rec)
            if not path.is_file():
                raise UnitFormatError(units_path, f"utterance {rec.id!r}: audio file {path} does not exist", lineno)
            info = audio_info(path)
            if (info.num_samples, info.sample_rate) != (rec.num_samples, rec.sample_rate):
                raise UnitFormatError(units_path, f"utterance {rec.id!r}: audio {path} has {info.num_samples} samples "
                                                  f"at {info.sample_rate} Hz, record says {rec.num_samples} at "
                                                  f"{rec.sample_rate} Hz", lineno)
            report.audio_checked += 1
    if 0 < report.num_quantized < report.num_utterances:
        raise UnitFormatError(units_path, f"only {report.num_quantized} of {report.num_utterances} utterances have "
                                          "'units': a unit set is quantized entirely or not at all")
    for key, found in (("num_utterances", report.num_utterances), ("num_tokens", report.num_tokens)):
        declared = getattr(meta, key)
        if declared is not None and declared != found:
            raise UnitFormatError(unit_dir / META_NAME, f"{key} is {declared} but {UNITS_NAME} holds {found} "
                                                        "(truncated or replaced units.jsonl?)")
    if store is not None and len(store) != report.num_utterances:
        extra = sorted(set(store.index) - set(_ids(units_path)))[:3]
        raise UnitFormatError(index_path, f"index has {len(store)} entries for {report.num_utterances} utterances "
                                          f"(e.g. unknown ids {extra})")
    report.vocab_used = len(used)
    leftovers = sorted(p.name for p in unit_dir.glob("units.*.jsonl"))
    if leftovers:
        report.warnings.append(f"unmerged shard files present: {', '.join(leftovers)}")
    return report


def _ids(units_path: Path) -> list[str]:
    return [rec.id for rec in read_unit_file(units_path, None, validate=False)]
