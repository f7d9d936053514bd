"""MCD and F0 errors of a synthesized wave against its reference, on ONE DTW alignment.

Synthesized speech rarely has the reference's durations (predicted durations, a TTS model's
own timing), so frame ``i`` of one is not frame ``i`` of the other. The two mel-cepstrum
sequences (:func:`speechunits.eval.mcd.paired_cepstra`) are aligned by DTW once; MCD is the
mean distance along the path, and the two Praat F0 tracks are laid on one time axis by the
same path before the F0 errors (:mod:`speechunits.eval.f0_metrics`) are computed. Both
``evaluate-synthesis`` (unit-to-speech) and ``tts-evaluate`` score through
:func:`dtw_scores`, so their numbers share one definition.
"""

from __future__ import annotations

import math

import numpy as np

from speechunits.eval.f0_metrics import f0_errors, f0_frame_error
from speechunits.eval.mcd import HOP_SECONDS, MCD_SCALE, dtw_path, paired_cepstra
from speechunits.features.f0 import F0Config, extract_f0

NAN_SCORES = {"mcd_db": math.nan, "log_f0_rmse_cents": math.nan, "voicing_error": math.nan,
              "f0_frame_error": math.nan, "aligned_frames": 0}


def aligned_f0_pairs(ref_f0: np.ndarray, hyp_f0: np.ndarray, path_i: np.ndarray, path_j: np.ndarray,
                     f0_hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The two F0 tracks (frame hop ``f0_hop_seconds``) on the time axis of a DTW path over cepstrum
    frames (``HOP_SECONDS`` apart): one entry per distinct (reference, synthesized) F0 frame pair."""
    if not len(ref_f0) or not len(hyp_f0):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    scale = HOP_SECONDS / f0_hop_seconds
    pairs = np.unique(np.stack([np.minimum((path_i * scale).astype(np.int64), len(ref_f0) - 1),
                                np.minimum((path_j * scale).astype(np.int64), len(hyp_f0) - 1)], axis=1), axis=0)
    return np.asarray(ref_f0)[pairs[:, 0]], np.asarray(hyp_f0)[pairs[:, 1]]


def dtw_scores(ref_wave: np.ndarray, hyp_wave: np.ndarray, sample_rate: int,
               f0_cfg: F0Config = F0Config()) -> dict[str, float]:
    """``{"mcd_db", "log_f0_rmse_cents", "voicing_error", "f0_frame_error", "aligned_frames"}`` of one
    synthesized wave; NaN figures when either wave is shorter than one cepstrum hop (or, for the F0
    figures, than one F0 frame)."""
    ref_c, hyp_c = paired_cepstra(ref_wave, hyp_wave, sample_rate)
    if not len(ref_c) or not len(hyp_c):
        return dict(NAN_SCORES)
    path_i, path_j, dist = dtw_path(ref_c, hyp_c)
    # Praat centres its analysis grid on the sound, so two waves of different lengths are
    # analysed at shifted times (and its path search may then flip octaves): pad both to one length
    n = max(len(ref_wave), len(hyp_wave))
    ref_f0 = extract_f0(np.pad(ref_wave, (0, n - len(ref_wave))), sample_rate, f0_cfg)
    hyp_f0 = extract_f0(np.pad(hyp_wave, (0, n - len(hyp_wave))), sample_rate, f0_cfg)
    ref_a, hyp_a = aligned_f0_pairs(ref_f0, hyp_f0, path_i, path_j, f0_cfg.hop_seconds)
    f0 = f0_errors(ref_a, hyp_a)
    return {"mcd_db": float(MCD_SCALE * dist.mean()), "log_f0_rmse_cents": f0["log_f0_rmse_cents"],
            "voicing_error": f0["voicing_error"], "f0_frame_error": f0_frame_error(ref_a, hyp_a),
            "aligned_frames": int(len(ref_a))}


__all__ = ["aligned_f0_pairs", "dtw_scores"]
