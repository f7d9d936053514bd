"""Given segments for ``tokenize --segments UNIT_DIR``: pool the model's features over another set's spans.

Why: to compare segmentations with the tokenizer held fixed, e.g. "bootstrap-segment tokens
clustered the same way as Sylber's", the spans come from another unit set (such as the output
of ``bootstrap-segments``) and only the features and their mean pooling
(:func:`speechunits.sylber.segment.segment_means`) are the model's. The spans are read by the
existing segment source machinery (``units:DIR``,
:class:`speechunits.sylber.segment_sources.FileSegmentSource`), not by a reader of its own.

Rules:

* The segment set's frame grid must be the model's (same ``frame_rate_hz``, the 50 Hz grid of
  the segment sources): otherwise :class:`~speechunits.errors.ConfigError` naming the set,
  before any work. No silent resampling of boundaries.
* An utterance the segment set lacks is a bad item (listed in ``bad_utts.J.txt``), not fatal.
* Frame counts may differ by the encoder's receptive field: the acoustic bootstrap gives
  ``n // 320`` frames, a wav2vec-style encoder ``(n - 80) // 320``. Spans are clipped to the
  model's frames when they overhang by at most :data:`MAX_OVERHANG_FRAMES`; a span reaching
  further means the set was made from other audio, and the utterance is a bad item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError
from speechunits.io_utils import sha256_path
from speechunits.sylber.bootstrap import FRAME_RATE
from speechunits.sylber.segment_sources import FileSegmentSource
from speechunits.units import read_meta

SEGMENTER = "given"
MAX_OVERHANG_FRAMES = 1
"""How far (frames) a given span may end past the model's last frame and still be clipped."""


@dataclass(frozen=True)
class SegmentSet:
    """A unit set whose spans are pooled: its directory, token kind, producer and ``units.jsonl`` hash."""

    path: Path
    kind: str
    frame_rate_hz: float
    sha256: str
    segmenter: dict[str, Any]
    """The segment set's own producer block: which segmenter, with which settings."""

    def producer(self) -> dict[str, Any]:
        """The ``segments`` entry of the output's producer block: the set's path and its producer.

        It says *how* the segments were made, not *which data* they cover, so the train and test
        sets of one tokenizer share a producer (and the LM's unit set hash); the hash of this set's
        ``units.jsonl`` goes into the job config instead, so a changed segment set is redone."""
        return {"path": str(self.path), "producer": self.segmenter}


def open_segment_set(unit_dir: Path) -> SegmentSet:
    """Read the segment set's meta and hash its ``units.jsonl`` (UnitFormatError when it is no unit set)."""
    unit_dir = Path(unit_dir)
    if not unit_dir.is_dir():
        raise ConfigError(unit_dir, "--segments: segment unit set directory does not exist")
    meta = read_meta(unit_dir)
    units = unit_dir / "units.jsonl"
    if not units.is_file():
        raise ConfigError(units, "--segments: the segment unit set has no units.jsonl")
    return SegmentSet(path=unit_dir, kind=meta.kind, frame_rate_hz=meta.frame_rate_hz, sha256=sha256_path(units),
                      segmenter=dict(meta.producer))


def check_frame_rate(segments: SegmentSet, sample_rate: int, hop: int) -> None:
    """ConfigError naming the set unless its frame rate is the model's (and the 50 Hz segment grid)."""
    model_hz = sample_rate / hop
    if segments.frame_rate_hz != model_hz:
        raise ConfigError(segments.path, f"--segments: the segment set is at {segments.frame_rate_hz:g} Hz but the "
                                         f"model's frames are at {model_hz:g} Hz ({sample_rate}/{hop}); "
                                         "make the segments on the model's frame grid")
    if model_hz != FRAME_RATE:
        raise ConfigError(segments.path, f"--segments: given segments need a {FRAME_RATE:g} Hz model, "
                                         f"this one runs at {model_hz:g} Hz ({sample_rate}/{hop})")


class GivenSegments:
    """The spans of a segment set per utterance, fitted to the model's frame count."""

    def __init__(self, segments: SegmentSet) -> None:
        self.set = segments
        self.source = FileSegmentSource(segments.path, kind="units")

    def has(self, utt: Utterance) -> bool:
        return self.source.has(utt)

    def missing_reason(self, utt: Utterance) -> str:
        """The ``bad_utts`` line of an utterance the segment set lacks."""
        return f"{utt.id}\t{utt.audio}: not in the segment set {self.set.path}"

    def frames(self, utt: Utterance, num_frames: int) -> np.ndarray:
        """(N, 2) int64 spans clipped to ``[0, num_frames)``; ValueError when one overhangs too far."""
        seg = self.source.segments(utt)
        if len(seg) and int(seg[-1, 1]) > num_frames + MAX_OVERHANG_FRAMES:
            raise ValueError(f"segments end at frame {int(seg[-1, 1])} but the model gives {num_frames} frames "
                             f"(more than {MAX_OVERHANG_FRAMES} past the end: other audio?)")
        seg = seg[seg[:, 0] < num_frames].copy()
        seg[:, 1] = np.minimum(seg[:, 1], num_frames)
        return seg


__all__ = ["MAX_OVERHANG_FRAMES", "SEGMENTER", "GivenSegments", "SegmentSet", "check_frame_rate", "open_segment_set"]
