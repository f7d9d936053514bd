"""Mel-cepstral distortion between a reference and a synthesized waveform, DTW-aligned.

**Cepstra** (:func:`mel_cepstrum`): the MFCC-style approximation, *not* SPTK's ``mcep``
(all-pass warped mel-cepstral analysis). Per frame: the power spectrum of a Hann window of
25 ms (``n_fft`` the next power of two), every 5 ms; :func:`~speechunits.features.mel.mel_filterbank`
with 40 Slaney bands from 0 Hz to Nyquist; the natural log of the band *amplitudes* (half
the log of the band powers, floored at ``1e-10``), as mel-cepstra are cepstra of the log
amplitude; the orthonormal DCT-II over the bands; coefficients ``c1..cN`` (``c0``, the
frame's overall level, is dropped so the metric ignores loudness). Frames follow the LogMel
convention (reflect padding, ``T // hop`` frames). Numbers are therefore not comparable with
MCDs computed from SPTK mel-cepstra (a different analysis): compare systems under this one
definition.

**Distortion** (:func:`mcd_dtw`): the two cepstrum sequences are aligned by dynamic time
warping on the Euclidean distance between frames, with the standard symmetric step pattern
(steps (1,1), (1,0), (0,1), unweighted: the accumulated cost of a cell is its own distance
plus the smallest of its three predecessors'; ties prefer the diagonal when backtracking).
Along the path, each aligned pair ``(c, c')`` costs
``MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2)`` dB, and the result is the mean over
the path. Silence is not removed, but both waves' band powers are floored at one level,
``DYNAMIC_RANGE_DB`` (60 dB) below the reference's loudest band (:func:`paired_cepstra`):
without it the log of near-silent bands (down to ``1e-10``) dominates the distance, and MCD
measures the hiss a vocoder leaves in pauses rather than the speech. The DTW kernel is compiled with numba (``cache=True``;
the cache goes to a user directory, never the source tree: :mod:`speechunits.numba_cache`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)
"""dB per unit of Euclidean cepstral distance: ``(10 / ln 10) * sqrt(2)``."""
N_MELS = 40
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.005
POWER_FLOOR = 1e-10
DYNAMIC_RANGE_DB = 60.0
"""MCD floors both sides' band powers this far below the reference's loudest band."""


def _dct_ii_ortho(n: int) -> np.ndarray:
    """``[n, n]`` orthonormal DCT-II matrix (row k = basis k)."""
    k = np.arange(n)[:, None]
    m = np.arange(n)[None, :]
    basis = np.cos(np.pi * k * (2 * m + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis


def mel_band_power(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[frames, N_MELS]`` float64 mel band powers of ``wave`` (25 ms Hann every 5 ms); frames = T // hop."""
    from speechunits.features.mel import MelConfig, mel_filterbank

    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    win = max(1, round(WINDOW_SECONDS * sample_rate))
    hop = max(1, round(HOP_SECONDS * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    cfg = MelConfig(sample_rate=sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=N_MELS,
                    f_max=sample_rate / 2)
    frames = len(wave) // hop
    if frames == 0:
        return np.zeros((0, N_MELS))
    left, right = cfg.padding
    padded = np.pad(wave, (left, right), mode="reflect" if len(wave) > max(left, right) else "constant")
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start:start + win] = np.hanning(win + 1)[:win]  # periodic Hann, as torch.hann_window
    chunks = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:frames]
    power = np.abs(np.fft.rfft(chunks * window, axis=1)) ** 2
    return power @ mel_filterbank(cfg).numpy().astype(np.float64).T


def cepstra_of_bands(bands: np.ndarray, n_coeffs: int = 24, power_floor: float = POWER_FLOOR) -> np.ndarray:
    """``[frames, n_coeffs]`` cepstra ``c1..cN`` of mel band powers floored at ``power_floor``."""
    if not 1 <= n_coeffs < N_MELS:
        raise ValueError(f"n_coeffs must be in 1..{N_MELS - 1}, got {n_coeffs}")
    log_mel = 0.5 * np.log(np.maximum(bands, power_floor))  # log amplitude
    return log_mel @ _dct_ii_ortho(N_MELS)[1:n_coeffs + 1].T


def mel_cepstrum(wave: np.ndarray, sample_rate: int, n_coeffs: int = 24, power_floor: float = POWER_FLOOR) -> np.ndarray:
    """``[frames, n_coeffs]`` float64 cepstra ``c1..cN`` of ``wave`` (see the module docstring); frames = T // hop."""
    return cepstra_of_bands(mel_band_power(wave, sample_rate), n_coeffs, power_floor)


def paired_cepstra(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, n_coeffs: int = 24,
                   dynamic_range_db: float = DYNAMIC_RANGE_DB) -> tuple[np.ndarray, np.ndarray]:
    """Cepstra of a reference and a synthesized wave with one power floor: ``dynamic_range_db`` below the
    reference's loudest band, so both sides' silences (and a vocoder's faint hiss in them) count alike."""
    ref_bands, hyp_bands = mel_band_power(ref, sample_rate), mel_band_power(hyp, sample_rate)
    peak = float(ref_bands.max()) if ref_bands.size else 0.0
    floor = max(peak * 10.0 ** (-dynamic_range_db / 10.0), POWER_FLOOR)
    return cepstra_of_bands(ref_bands, n_coeffs, floor), cepstra_of_bands(hyp_bands, n_coeffs, floor)


@njit(cache=True, nogil=True)
def _frame_distance(a: np.ndarray, b: np.ndarray, i: int, j: int) -> float:  # pragma: no cover - numba
    s = 0.0
    for k in range(a.shape[1]):
        diff = a[i, k] - b[j, k]
        s += diff * diff
    return math.sqrt(s)


@njit(cache=True, nogil=True)
def _dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """(i, j, frame distance) along the DTW path of two ``[n, d]`` / ``[m, d]`` sequences."""
    n, m = a.shape[0], b.shape[0]
    acc = np.full((n + 1, m + 1), np.inf)  # distances are recomputed, not stored: memory is this one matrix
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = _frame_distance(a, b, i - 1, j - 1) + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    pi = np.empty(n + m, np.int64)
    pj = np.empty(n + m, np.int64)
    length = 0
    i, j = n, m
    while True:
        pi[length] = i - 1
        pj[length] = j - 1
        length += 1
        if i == 1 and j == 1:
            break
        diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        if diag <= up and diag <= left:
            i -= 1
            j -= 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    pi = pi[:length][::-1].copy()
    pj = pj[:length][::-1].copy()
    cost = np.empty(length)
    for k in range(length):
        cost[k] = _frame_distance(a, b, pi[k], pj[k])
    return pi, pj, cost


def dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DTW of two feature sequences ``[n, d]``, ``[m, d]`` (n, m >= 1): path indices and the distance of each pair."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"dtw_path needs two non-empty [frames, dim] arrays of one dim, got {a.shape} and {b.shape}")
    return _dtw_path(a, b)


def mcd_dtw(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, n_coeffs: int = 24) -> float:
    """Mean mel-cepstral distortion in dB along the DTW path; NaN when either wave is shorter than one hop."""
    a, b = paired_cepstra(ref, hyp, sample_rate, n_coeffs)
    if not len(a) or not len(b):
        return float("nan")
    _i, _j, dist = dtw_path(a, b)
    return float(MCD_SCALE * dist.mean())


__all__ = ["DYNAMIC_RANGE_DB", "MCD_SCALE", "cepstra_of_bands", "dtw_path", "mcd_dtw", "mel_band_power", "mel_cepstrum",
           "paired_cepstra"]
