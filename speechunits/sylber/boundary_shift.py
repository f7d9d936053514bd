"""A constant boundary shift, tuned on a dev set, applied to a model's segments.

A model's boundaries can sit a constant time off the references (the receptive field, the
teacher's lag): ``tune-segmentation`` picks the shift that maximises the R-value on a
labelled dev set (:func:`speechunits.eval.boundaries.tune_shift`: the shift is **added** to
the predicted boundary times) and ``--export`` stores it, in seconds, as ``shift`` in the
checkpoint's segmentation defaults, next to the norm and merge thresholds. ``segment`` and
``tokenize`` then apply it to every boundary:

* **Times** (``segment``'s seconds) move by the shift exactly and are clipped to
  ``[0, duration]``.
* **Frames** (``tokenize``'s unit sets, ``segments_frames``) move by the nearest whole number
  of frames, ``floor(shift * frame_rate + 0.5)`` (a 50 Hz grid cannot hold -15 ms: it becomes
  -20 ms), and are clipped to ``[0, ceil(num_samples / hop)]``, the frames the audio covers.
* The shift is constant, so order and non-overlap are kept; only a segment pushed wholly past
  an end of the audio collapses, and a collapsed (empty) segment is dropped, with its
  embedding row.

The embeddings stay the means of the model's own (unshifted) frames: the shift moves where a
syllable is said to lie in the audio, not which features the model grouped.
"""

from __future__ import annotations

import math

import numpy as np


def shift_frames(shift: float, frame_rate: float) -> int:
    """The whole number of frames nearest to ``shift`` seconds at ``frame_rate`` (halves round up)."""
    return int(math.floor(float(shift) * float(frame_rate) + 0.5))


def shift_segment_frames(segments: np.ndarray, frames: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``[start, end)`` frame segments moved by ``frames`` and clipped to ``[0, num_frames]``.

    Returns the kept (non-empty) segments, (K, 2) int64, and their indices into ``segments``.
    """
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    moved = np.clip(seg + int(frames), 0, max(int(num_frames), 0))
    keep = np.flatnonzero(moved[:, 1] > moved[:, 0])
    return moved[keep], keep


def shift_segment_seconds(segments: np.ndarray, shift: float, duration: float) -> np.ndarray:
    """``(start, end)`` times moved by ``shift`` seconds and clipped to ``[0, duration]`` (float64)."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    return np.clip(seg + float(shift), 0.0, max(float(duration), 0.0))


def shift_producer(shift: float, frame_rate: float) -> dict[str, float | int]:
    """The keys a unit set's ``producer`` records about the shift its frames carry.

    ``shift``: seconds applied (whole frames); ``shift_frames``: those frames;
    ``shift_requested``: the seconds asked for (the checkpoint's or ``--shift``). A set whose
    producer has no ``shift`` carries none.
    """
    frames = shift_frames(shift, frame_rate)
    return {"shift": frames / float(frame_rate), "shift_frames": frames, "shift_requested": float(shift)}


__all__ = ["shift_frames", "shift_producer", "shift_segment_frames", "shift_segment_seconds"]
