"""F0 errors between a reference and a synthesized F0 track on the same frame grid.

* ``log_f0_rmse_cents``: root mean square of ``1200 * log2(hyp / ref)`` over the frames voiced
  in both tracks; NaN when no voiced frames overlap.
* ``voicing_error``: the share of frames whose voiced/unvoiced decision differs (voiced:
  F0 > 0), over all compared frames; NaN when there is no frame.
* :func:`f0_frame_error` (FFE, Chu & Alwan 2009): the share of frames with either a voicing
  decision error or, voiced in both, a gross pitch error (``|hyp / ref - 1| > 20 %``); one
  number for the two ways a pitch track goes wrong. NaN when there is no frame.

Tracks of different lengths (a synthesized wave a few samples shorter than its reference)
are compared over the shorter length: the extra frames of the longer one are ignored.
``frames`` and ``voiced_both`` give the counts behind the two rates.
"""

from __future__ import annotations

import math

import numpy as np


GROSS_PITCH_ERROR = 0.2
"""A voiced frame's F0 is grossly wrong when it is more than 20 % off the reference (Chu &
Alwan 2009, after Rabiner et al. 1976): octave errors and wrong intonation, not jitter."""


def _paired(ref_f0: np.ndarray, hyp_f0: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Both tracks as float64 over the shorter length; ValueError on non-finite values."""
    ref = np.asarray(ref_f0, dtype=np.float64).reshape(-1)
    hyp = np.asarray(hyp_f0, dtype=np.float64).reshape(-1)
    n = min(ref.size, hyp.size)
    ref, hyp = ref[:n], hyp[:n]
    if not (np.isfinite(ref).all() and np.isfinite(hyp).all()):
        raise ValueError(f"{who}: F0 tracks must be finite (0 marks unvoiced frames)")
    return ref, hyp


def f0_frame_error(ref_f0: np.ndarray, hyp_f0: np.ndarray) -> float:
    """FFE of two F0 tracks in Hz (0 = unvoiced): (voicing errors + gross pitch errors) / frames."""
    ref, hyp = _paired(ref_f0, hyp_f0, "f0_frame_error")
    if not ref.size:
        return math.nan
    ref_v, hyp_v = ref > 0, hyp > 0
    both = ref_v & hyp_v
    gross = np.zeros_like(both)
    gross[both] = np.abs(hyp[both] / ref[both] - 1.0) > GROSS_PITCH_ERROR
    return float(np.mean((ref_v != hyp_v) | gross))


def f0_errors(ref_f0: np.ndarray, hyp_f0: np.ndarray) -> dict[str, float]:
    """``{"log_f0_rmse_cents", "voicing_error", "frames", "voiced_both"}`` of two F0 tracks in Hz (0 = unvoiced)."""
    ref, hyp = _paired(ref_f0, hyp_f0, "f0_errors")
    n = ref.size
    ref_v, hyp_v = ref > 0, hyp > 0
    both = ref_v & hyp_v
    cents = 1200.0 * np.log2(hyp[both] / ref[both])
    return {
        "log_f0_rmse_cents": float(np.sqrt(np.mean(cents ** 2))) if cents.size else math.nan,
        "voicing_error": float(np.mean(ref_v != hyp_v)) if n else math.nan,
        "frames": int(n),
        "voiced_both": int(both.sum()),
    }


__all__ = ["GROSS_PITCH_ERROR", "f0_errors", "f0_frame_error"]
