"""F0 errors between a reference and a synthesized F0 track on the same frame grid.

* ``log_f0_rmse_cents``: root mean square of ``1200 * log2(hyp / ref)`` over the frames voiced
  in both tracks; NaN when no voiced frames overlap.
* ``voicing_error``: the share of frames whose voiced/unvoiced decision differs (voiced:
  F0 > 0), over all compared frames; NaN when there is no frame.

Tracks of different lengths (a synthesized wave a few samples shorter than its reference)
are compared over the shorter length: the extra frames of the longer one are ignored.
``frames`` and ``voiced_both`` give the counts behind the two rates.
"""

from __future__ import annotations

import math

import numpy as np


def f0_errors(ref_f0: np.ndarray, hyp_f0: np.ndarray) -> dict[str, float]:
    """``{"log_f0_rmse_cents", "voicing_error", "frames", "voiced_both"}`` of two F0 tracks in Hz (0 = unvoiced)."""
    ref = np.asarray(ref_f0, dtype=np.float64).reshape(-1)
    hyp = np.asarray(hyp_f0, dtype=np.float64).reshape(-1)
    n = min(ref.size, hyp.size)
    ref, hyp = ref[:n], hyp[:n]
    if not (np.isfinite(ref).all() and np.isfinite(hyp).all()):
        raise ValueError("f0_errors: F0 tracks must be finite (0 marks unvoiced frames)")
    ref_v, hyp_v = ref > 0, hyp > 0
    both = ref_v & hyp_v
    cents = 1200.0 * np.log2(hyp[both] / ref[both])
    return {
        "log_f0_rmse_cents": float(np.sqrt(np.mean(cents ** 2))) if cents.size else math.nan,
        "voicing_error": float(np.mean(ref_v != hyp_v)) if n else math.nan,
        "frames": int(n),
        "voiced_both": int(both.sum()),
    }


__all__ = ["f0_errors"]
