"""Pluggable sources of syllable segments for Sylber stage 1 (and for evaluation).

Every source answers ``segments(utt) -> (N, 2) int64`` ``[start, end)`` frames on the 50 Hz
grid (16 kHz, hop 320: frame ``i`` covers samples ``[320 i, 320 (i + 1))``), sorted and
non-overlapping, silence left out.

* :class:`AcousticSegmentSource`: the built-in acoustic bootstrap segmenter
  (:mod:`speechunits.sylber.bootstrap`).
* :class:`FileSegmentSource`: precomputed segments: per-utterance ``<id>.npy`` arrays (frames
  or seconds), TextGrid tiers (``<id>.TextGrid``, found recursively) or a unit set directory.
* :class:`ModelSegmentSource`: any callable ``model(audio_path)`` whose result has
  ``.segments_frames`` (e.g. :class:`speechunits.sylber.segmenter.Segmenter`). Built from
  ``model:CHECKPOINT`` it ignores the checkpoint's boundary shift (``shift: 0``, unless the
  spec dict gives one): the frames stay the model's own, which stage-1 targets index.

:func:`make_segment_source` builds one from a spec string or dict::

    "acoustic"                      {"type": "acoustic", "min_prominence_db": 4.0}
    "npy:DIR"  "npy-seconds:DIR"    {"type": "npy", "dir": DIR, "unit": "seconds"}
    "textgrid:DIR" "textgrid:DIR#syllables"
                                    {"type": "textgrid", "dir": DIR, "tier": "syllables"}
    "units:DIR"                     {"type": "units", "dir": DIR}
    "model:CHECKPOINT"              {"type": "model", "checkpoint": PATH} or {"type": "model", "model": obj}

Seconds become frames by rounding each boundary to the nearest frame edge
(``round(t * 50)``); spans that collapse to zero frames are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from speechunits.data.alignments import SILENCE_LABELS, seconds_to_frames, textgrid_syllable_spans
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.io_utils import index_files, load_npy
from speechunits.sylber.bootstrap import FRAME_RATE, SAMPLE_RATE, BootstrapConfig, bootstrap_segments

@runtime_checkable
class SegmentSource(Protocol):
    """Anything that gives an utterance's syllable segments as (N, 2) int64 frames at 50 Hz."""

    def segments(self, utt: Utterance) -> np.ndarray:
        """``[start, end)`` frames, sorted, non-overlapping."""
        ...


def check_segments(segments: np.ndarray, where: str | os.PathLike[str]) -> np.ndarray:
    """Validate (N, 2) integer [start, end) frames (sorted, non-overlapping, non-empty, >= 0)."""
    seg = np.asarray(segments)
    if seg.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise UnitFormatError(where, f"expected an (N, 2) array of [start, end) frames, found shape {seg.shape}")
    if not np.issubdtype(seg.dtype, np.integer):
        if not np.all(np.isfinite(seg)) or np.any(seg != np.rint(seg)):
            raise UnitFormatError(where, f"expected integer frames, found {seg.dtype} with fractional values "
                                         "(use the 'seconds' unit for times)")
    seg = seg.astype(np.int64)
    bad = np.flatnonzero((seg[:, 0] < 0) | (seg[:, 1] <= seg[:, 0]))
    if len(bad):
        raise UnitFormatError(where, f"segment {bad[0]} is {seg[bad[0]].tolist()}: expected 0 <= start < end")
    overlap = np.flatnonzero(seg[1:, 0] < seg[:-1, 1])
    if len(overlap):
        i = int(overlap[0])
        raise UnitFormatError(where, f"segments {i} and {i + 1} ({seg[i].tolist()}, {seg[i + 1].tolist()}) "
                                     "are unsorted or overlap")
    return seg


class AcousticSegmentSource:
    """Segments from the built-in acoustic bootstrap segmenter (audio loaded at 16 kHz)."""

    def __init__(self, config: BootstrapConfig | None = None) -> None:
        self.config = config or BootstrapConfig()

    @staticmethod
    def load(utt: Utterance) -> np.ndarray:
        """The utterance's audio as a mono float32 waveform at 16 kHz (AudioError when unusable)."""
        from speechunits.audio import load_audio

        return np.asarray(load_audio(utt.audio, target_sr=SAMPLE_RATE), dtype=np.float32).reshape(-1)

    def segments(self, utt: Utterance) -> np.ndarray:
        return bootstrap_segments(self.load(utt), SAMPLE_RATE, self.config)


class FileSegmentSource:
    """Precomputed segments looked up by utterance id.

    Args:
        root: a directory of ``<id>.npy`` / ``<id>.TextGrid`` files (searched recursively), or
            a unit set directory for ``kind="units"``.
        kind: ``"npy"``, ``"textgrid"`` or ``"units"``.
        unit: for ``npy``: ``"frames"`` (int [start, end) at 50 Hz) or ``"seconds"``.
        tier: the TextGrid tier holding syllables.
        skip_labels: TextGrid labels that mean silence (case-insensitive).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        kind: str = "npy",
        unit: str = "frames",
        tier: str = "syllables",
        skip_labels: Iterable[str] = SILENCE_LABELS,
    ) -> None:
        if kind not in {"npy", "textgrid", "units"}:
            raise ConfigError(None, f"segment file kind must be npy, textgrid or units, got {kind!r}")
        if unit not in {"frames", "seconds"}:
            raise ConfigError(None, f"segment unit must be frames or seconds, got {unit!r}")
        self.root, self.kind, self.unit, self.tier = Path(root), kind, unit, tier
        self.skip_labels = frozenset(s.lower() for s in skip_labels)
        self._index: dict[str, Any] | None = None

    def _lookup(self) -> dict[str, Any]:
        if self._index is None:
            if self.kind == "npy":
                self._index = index_files(self.root, ".npy")
            elif self.kind == "textgrid":
                self._index = index_files(self.root, ".TextGrid")
            else:
                self._index = unit_set_segments(self.root)
        return self._index

    def has(self, utt: Utterance) -> bool:
        """Whether the source holds segments of ``utt`` (reads the index; its format errors propagate)."""
        return utt.id in self._lookup()

    def segments(self, utt: Utterance) -> np.ndarray:
        index = self._lookup()
        if utt.id not in index:
            what = {"npy": f"{utt.id}.npy", "textgrid": f"{utt.id}.TextGrid", "units": f"a line with id {utt.id!r}"}
            raise UnitFormatError(self.root, f"no segments for utterance {utt.id!r}: expected {what[self.kind]}")
        if self.kind == "units":
            return index[utt.id]
        path = index[utt.id]
        if self.kind == "npy":
            arr = load_npy(path, UnitFormatError, ".npy segment array")
            if self.unit == "seconds":
                if arr.size and (arr.ndim != 2 or arr.shape[1] != 2):
                    raise UnitFormatError(path, f"expected an (N, 2) array of [start, end) seconds, found {arr.shape}")
                arr = seconds_to_frames(arr, FRAME_RATE)
            return check_segments(arr, path)
        return check_segments(self._textgrid_frames(path), path)

    def _textgrid_frames(self, path: Path) -> np.ndarray:
        return seconds_to_frames(textgrid_syllable_spans(path, self.tier, self.skip_labels)[1], FRAME_RATE)


def unit_set_segments(unit_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All utterances' segments of a unit set, rescaled to the 50 Hz grid when needed."""
    from speechunits.units import read_meta, read_units

    unit_dir = Path(unit_dir)
    rate = read_meta(unit_dir).frame_rate_hz
    out: dict[str, np.ndarray] = {}
    for rec in read_units(unit_dir):
        seg = rec.segments
        if rate != FRAME_RATE:
            seg = seconds_to_frames(seg / rate, FRAME_RATE)
        out[rec.id] = check_segments(seg, unit_dir / "units.jsonl")
    return out


class ModelSegmentSource:
    """Segments from a model: any callable ``model(audio_path)`` returning ``.segments_frames``."""

    def __init__(self, model: Callable[[str], Any]) -> None:
        self.model = model

    def segments(self, utt: Utterance) -> np.ndarray:
        result = self.model(utt.audio)
        frames = getattr(result, "segments_frames", None)
        if frames is None and isinstance(result, Mapping):
            frames = result.get("segments_frames")
        if frames is None:
            raise ConfigError(None, f"model {type(self.model).__name__} returned {type(result).__name__} "
                                    "without segments_frames")
        return check_segments(np.asarray(frames), utt.audio)


def make_segment_source(spec: str | Mapping[str, Any]) -> SegmentSource:
    """Build a :class:`SegmentSource` from a spec string (``"kind:path"``) or dict (see module doc)."""
    if isinstance(spec, str):
        spec = _parse_spec(spec)
    cfg = dict(spec)
    kind = cfg.pop("type", None)
    if kind == "acoustic":
        known = {f.name for f in fields(BootstrapConfig)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(None, f"unknown bootstrap parameters {unknown}; known: {sorted(known)}")
        return AcousticSegmentSource(BootstrapConfig(**cfg))
    if kind in {"npy", "textgrid", "units"}:
        if "dir" not in cfg:
            raise ConfigError(None, f"segment source {kind!r} needs a 'dir'")
        return FileSegmentSource(cfg.pop("dir"), kind=kind, **cfg)
    if kind == "model":
        if "model" in cfg:
            return ModelSegmentSource(cfg["model"])
        if "checkpoint" not in cfg:
            raise ConfigError(None, "segment source 'model' needs a 'checkpoint' or a 'model' object")
        from speechunits.sylber.segmenter import Segmenter

        cfg.setdefault("shift", 0.0)  # the model's own frames: they index its features (stage-1 targets)
        return ModelSegmentSource(Segmenter(cfg.pop("checkpoint"), **cfg))
    raise ConfigError(None, f"unknown segment source type {kind!r}; expected acoustic, npy, textgrid, units or model")


def _parse_spec(spec: str) -> dict[str, Any]:
    kind, _, rest = spec.partition(":")
    if kind == "acoustic" and not rest:
        return {"type": "acoustic"}
    if not rest:
        raise ConfigError(None, f"segment source spec {spec!r}: expected 'acoustic' or '<kind>:<path>'")
    if kind == "npy-seconds":
        return {"type": "npy", "dir": rest, "unit": "seconds"}
    if kind == "textgrid":
        path, _, tier = rest.partition("#")
        return {"type": "textgrid", "dir": path, **({"tier": tier} if tier else {})}
    if kind == "model":
        return {"type": "model", "checkpoint": rest}
    return {"type": kind, "dir": rest}
