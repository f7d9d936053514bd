"""Utterance-level prosody of a wave, and the statistics that say whether a TTS model transfers
or varies it: Pearson correlation with a bootstrap interval, and the spread across seeds.

**Per utterance** (:func:`utterance_prosody`):

* ``median_f0_semitones``: the median Praat F0 (:func:`speechunits.features.f0.extract_f0`)
  over voiced frames, in semitones re 100 Hz (``12 * log2(f0 / 100)``). Semitones because
  pitch is heard on a log scale: a 2-semitone shift is the same change for a low and a high
  voice. NaN when no frame is voiced.
* ``f0_std_semitones``: the standard deviation of the voiced frames' F0 in semitones (the
  pitch range); NaN when no frame is voiced.
* ``speech_seconds``: from the first to the last 10 ms frame whose energy is within
  ``SPEECH_RANGE_DB`` of the loudest frame: the span of speech without leading and trailing
  silence, so a model that appends a long pause is not counted as speaking slowly.
* ``seconds``: the whole wave; ``voiced_frames``: the frames the F0 figures stand on.

**Across utterances**: :func:`pearson` (NaN-aware: pairs with a NaN are dropped),
:func:`bootstrap_pearson` (percentile interval over resampled pairs), and
:func:`spread_across_seeds` (how much a sampled prosody varies for one sentence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from speechunits.features.f0 import F0Config, extract_f0

F0_REFERENCE_HZ = 100.0
"""Semitones are counted from 100 Hz, near the middle of adult speaking pitch."""
SPEECH_RANGE_DB = 40.0
"""A 10 ms frame counts as speech when its energy is within 40 dB of the loudest frame: weak
fricatives and stop bursts sit some 30 dB below the vowels, while the silence of recordings
and of vocoders' pauses lies 50 dB or more below them."""
ENERGY_FRAME_SECONDS = 0.01
MIN_PAIRS = 3
"""Fewer pairs than this give no correlation (two points always lie on a line)."""


def semitones(f0_hz: np.ndarray | float) -> np.ndarray | float:
    """``12 * log2(f0 / 100 Hz)``."""
    return 12.0 * np.log2(np.asarray(f0_hz, dtype=np.float64) / F0_REFERENCE_HZ)


def speech_span_seconds(wave: np.ndarray, sample_rate: int, range_db: float = SPEECH_RANGE_DB) -> float:
    """Seconds from the first to the last frame within ``range_db`` of the loudest frame (0 for silence)."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    hop = max(1, round(ENERGY_FRAME_SECONDS * sample_rate))
    frames = len(wave) // hop
    if frames == 0:
        return 0.0
    energy = np.mean(wave[: frames * hop].reshape(frames, hop) ** 2, axis=1)
    peak = float(energy.max())
    if peak <= 0.0:
        return 0.0
    loud = np.flatnonzero(energy >= peak * 10.0 ** (-range_db / 10.0))
    return float((loud[-1] - loud[0] + 1) * hop / sample_rate)


def utterance_prosody(wave: np.ndarray, sample_rate: int, f0_cfg: F0Config = F0Config()) -> dict[str, float]:
    """``{"median_f0_semitones", "f0_std_semitones", "speech_seconds", "seconds", "voiced_frames"}`` of one wave."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    f0 = extract_f0(wave, sample_rate, f0_cfg)
    voiced = f0[f0 > 0].astype(np.float64)
    st = semitones(voiced) if voiced.size else np.zeros(0)
    return {
        "median_f0_semitones": float(np.median(st)) if st.size else math.nan,
        "f0_std_semitones": float(np.std(st)) if st.size else math.nan,
        "speech_seconds": speech_span_seconds(wave, sample_rate),
        "seconds": len(wave) / sample_rate,
        "voiced_frames": int(voiced.size),
    }


def _finite_pairs(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"pearson: x and y differ in length ({xa.size} vs {ya.size})")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``[k, n]`` arrays; NaN where either row is constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    sxx, syy = (xc * xc).sum(-1), (yc * yc).sum(-1)
    # a row constant up to rounding (its variance a vanishing share of its power) has no correlation
    ok = (sxx > 1e-24 * (x * x).sum(-1)) & (syy > 1e-24 * (y * y).sum(-1)) & (sxx > 0) & (syy > 0)
    out = np.full(x.shape[:-1], math.nan)
    out[ok] = np.clip((xc * yc).sum(-1)[ok] / np.sqrt(sxx[ok] * syy[ok]), -1.0, 1.0)
    return out


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation over the pairs where both values are finite; NaN with fewer than
    ``MIN_PAIRS`` such pairs or when either side is constant (no variation to correlate)."""
    xa, ya = _finite_pairs(x, y)
    if xa.size < MIN_PAIRS:
        return math.nan
    return float(_pearson_rows(xa[None], ya[None])[0])


def bootstrap_pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n: int = 1000,
                      seed: int = 0) -> tuple[float, float, float]:
    """``(r, lo, hi)``: :func:`pearson` and its 95 % percentile bootstrap interval (``n`` resamples of
    the finite pairs with replacement; resamples that are constant on one side are dropped).
    All NaN when ``r`` is."""
    xa, ya = _finite_pairs(x, y)
    r = pearson(xa, ya)
    if math.isnan(r):
        return math.nan, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, xa.size, size=(int(n), xa.size))
    rs = _pearson_rows(xa[idx], ya[idx])
    rs = rs[np.isfinite(rs)]
    if not rs.size:
        return r, math.nan, math.nan
    lo, hi = np.percentile(rs, [2.5, 97.5])
    return r, float(lo), float(hi)


def probe_predictions(features: Sequence[Sequence[float]] | np.ndarray, target: Sequence[float] | np.ndarray,
                      folds: int = 5, ridge: float = 1.0, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of ``target`` by ridge regression on ``features`` ``[n, d]``.

    A *latent probe*: how much of a known property (a reference's recorded F0 shift, its speaking
    rate) a model's prosody embedding carries, whatever its decoder makes of it. Each fold is
    predicted by a model fitted on the others (features standardised on those), so the
    correlation of predictions and targets is an honest held-out figure. Rows with a non-finite
    value are NaN in the output; fewer than ``2 * folds`` usable rows give all NaN.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"probe_predictions: features [n, d] and target [n] expected, got {x.shape} and {y.shape}")
    out = np.full(y.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(x).all(axis=1) & np.isfinite(y))
    if ok.size < 2 * folds:
        return out
    order = np.random.default_rng(seed).permutation(ok)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        xt = (x[train] - mu) / sd
        y_mu = y[train].mean()
        w = np.linalg.solve(xt.T @ xt + ridge * np.eye(x.shape[1]), xt.T @ (y[train] - y_mu))
        out[test] = ((x[test] - mu) / sd) @ w + y_mu
    return out


def spread_across_seeds(values: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean over utterances (rows) of the standard deviation across seeds (columns, ``ddof=1``: the
    seeds are a sample of the model's distribution). NaN entries (a missing or unvoiced sample) are
    left out; rows with fewer than two finite values do not count; NaN when no row does."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"spread_across_seeds: expected [utterances, seeds], got shape {v.shape}")
    finite = np.isfinite(v)
    rows = finite.sum(axis=1) >= 2
    if not rows.any():
        return math.nan
    kept = np.where(finite[rows], v[rows], np.nan)
    return float(np.mean(np.nanstd(kept, axis=1, ddof=1)))


def rows_with_spread(values: Sequence[Sequence[float]] | np.ndarray) -> int:
    """How many rows :func:`spread_across_seeds` averages (two or more finite values)."""
    v = np.asarray(values, dtype=np.float64)
    return int((np.isfinite(v).sum(axis=1) >= 2).sum()) if v.ndim == 2 else 0


__all__ = ["probe_predictions", "F0_REFERENCE_HZ", "MIN_PAIRS", "SPEECH_RANGE_DB", "bootstrap_pearson", "pearson", "rows_with_spread",
           "semitones", "speech_span_seconds", "spread_across_seeds", "utterance_prosody"]
