"""The defined conversions of the unit format, one place each (``docs/unit-format.md``, section 7).

* frames <-> runs: per-frame ids and (units, starts, ends) with consecutive repeats merged;
* segments -> frame grid: token spans painted on a frame grid, gaps filled with a silence id
  (the input of syllable vocoders);
* length reconciliation against audio: truncate the longer side, never pad silently.

Frame ``i`` covers samples ``[i * hop, (i + 1) * hop)``; an utterance of ``n`` samples has
``ceil(n / hop)`` frames (:func:`num_frames`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from speechunits.errors import UnitFormatError

IntSeq = Sequence[int] | np.ndarray


def num_frames(num_samples: int, hop: int) -> int:
    """Frames covering ``num_samples`` samples: ``ceil(num_samples / hop)``."""
    if hop <= 0 or num_samples < 0:
        raise UnitFormatError(None, f"need num_samples >= 0 and hop > 0, got {num_samples}, {hop}")
    return -(-int(num_samples) // int(hop))


def frames_to_runs(ids: IntSeq) -> tuple[list[int], list[int], list[int]]:
    """Per-frame ids -> ``(units, starts, ends)`` with each run of equal ids one token."""
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        return [], [], []
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [arr.size]])
    return arr[starts].tolist(), starts.tolist(), ends.tolist()


def _check_spans(starts: IntSeq, ends: IntSeq, units: IntSeq | None) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(starts, dtype=np.int64).reshape(-1)
    e = np.asarray(ends, dtype=np.int64).reshape(-1)
    if s.shape != e.shape or (units is not None and len(units) != len(s)):
        raise UnitFormatError(None, f"starts/ends/units lengths differ: {len(s)}, {len(e)}, "
                                    f"{None if units is None else len(units)}")
    if len(s) and ((s < 0).any() or (s >= e).any() or (s[1:] < e[:-1]).any()):
        raise UnitFormatError(None, "segments must satisfy 0 <= start < end and start[i] >= end[i-1]")
    return s, e


def runs_to_frames(
    units: IntSeq, starts: IntSeq, ends: IntSeq, num_frames: int | None = None, silence_id: int | None = None
) -> np.ndarray:
    """Runs -> per-frame ids (int64), the inverse of :func:`frames_to_runs`.

    ``num_frames`` defaults to the last end. Frames not covered by a run get ``silence_id``;
    without one, uncovered frames are an error (frame unit sets tile the utterance). Runs
    must end within ``num_frames``.
    """
    s, e = _check_spans(starts, ends, units)
    total = int(e[-1]) if num_frames is None and len(e) else int(num_frames or 0)
    if len(e) and e[-1] > total:
        raise UnitFormatError(None, f"last run ends at frame {int(e[-1])} beyond num_frames {total}; "
                                    "reconcile lengths first (reconcile_length)")
    covered = int((e - s).sum())
    if covered < total and silence_id is None:
        raise UnitFormatError(None, f"runs cover {covered} of {total} frames and no silence id is given for the gaps")
    grid = np.full(total, -1 if silence_id is None else silence_id, dtype=np.int64)
    lengths = e - s
    if len(s):
        idx = np.repeat(s, lengths) + (np.arange(covered) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        grid[idx] = np.repeat(np.asarray(units, dtype=np.int64), lengths)
    return grid


def segments_to_frame_grid(
    starts: IntSeq, ends: IntSeq, units: IntSeq, num_frames: int, silence_id: int, tolerance: int = 1
) -> np.ndarray:
    """Token segments -> a ``num_frames`` grid of ids, gaps filled with ``silence_id``.

    Segments may end up to ``tolerance`` frames past ``num_frames`` (front-end rounding);
    those frames are cut off. Anything further is an error, never silently dropped.
    """
    s, e = _check_spans(starts, ends, units)
    if len(e) and e[-1] > num_frames + tolerance:
        raise UnitFormatError(None, f"segments end at frame {int(e[-1])}, more than {tolerance} past the "
                                    f"{num_frames} frames of the audio")
    if len(e) and e[-1] > num_frames:
        keep = s < num_frames
        s, e = s[keep], np.minimum(e[keep], num_frames)
        units = np.asarray(units)[keep]
    return runs_to_frames(units, s, e, num_frames, silence_id)


def reconcile_length(frames: np.ndarray, target_len: int, tolerance: int = 1) -> np.ndarray:
    """Cut ``frames`` (first axis) to ``target_len``; never pads.

    Raises UnitFormatError if ``frames`` is shorter than ``target_len`` by more than
    ``tolerance``. When it is shorter by at most ``tolerance`` it is returned unchanged and the
    caller trims the other side (see :func:`reconcile_frames_and_audio`).
    """
    n = len(frames)
    if n < target_len - tolerance:
        raise UnitFormatError(None, f"{n} frames for a target of {target_len} (short by {target_len - n} > "
                                    f"tolerance {tolerance}); refusing to pad")
    return frames[:target_len]


def reconcile_frames_and_audio(
    frames: np.ndarray, wav: np.ndarray, hop: int, tolerance: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Truncate per-frame features and a waveform to a common length (``len(frames) * hop`` samples)."""
    target = num_frames(len(wav), hop)
    frames = reconcile_length(frames, target, tolerance)
    return frames, wav[: len(frames) * hop]
