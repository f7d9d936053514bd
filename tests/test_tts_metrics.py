"""The TTS metrics of speechunits.eval: FFE, utterance prosody, correlations, spread across seeds,
attention diagonality/focus/failures. Numbers are checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.eval.aligned import aligned_f0_pairs, dtw_scores
from speechunits.eval.attention_metrics import (
    END_SLACK_SYMBOLS,
    MAX_BACKWARD_SYMBOLS,
    MAX_FORWARD_SYMBOLS,
    attention_failure,
    diagonality,
    focus_rate,
)
from speechunits.eval.f0_metrics import f0_errors, f0_frame_error
from speechunits.eval.prosody_metrics import (
    bootstrap_pearson,
    pearson,
    rows_with_spread,
    speech_span_seconds,
    spread_across_seeds,
    utterance_prosody,
)

SR = 16000


# ------------------------------------------------------------------ FFE
def test_f0_frame_error_counts_voicing_and_gross_pitch_errors() -> None:
    ref = np.array([100.0, 100.0, 100.0, 100.0, 0.0, 0.0, 200.0, 200.0, 100.0, 100.0])
    hyp = np.array([100.0, 119.0, 121.0, 79.0, 0.0, 150.0, 0.0, 100.0, 81.0, 100.0])
    # frame 2 (+21 %), 3 (-21 %), 7 (octave down): gross; 5, 6: voicing; 1 (+19 %), 8 (-19 %): fine
    assert f0_frame_error(ref, hyp) == pytest.approx(5 / 10)
    assert f0_frame_error(ref, ref) == 0.0
    assert f0_frame_error(ref, hyp[:4]) == pytest.approx(2 / 4)  # the shorter length
    assert math.isnan(f0_frame_error(np.zeros(0), hyp))
    with pytest.raises(ValueError, match="finite"):
        f0_frame_error(np.array([np.nan]), np.array([1.0]))


def test_ffe_is_voicing_error_plus_gross_errors() -> None:
    rng = np.random.default_rng(1)
    ref = np.where(rng.random(500) < 0.6, rng.uniform(80, 200, 500), 0.0)
    hyp = np.where(rng.random(500) < 0.6, ref * rng.uniform(0.6, 1.4, 500), 0.0)
    both = (ref > 0) & (hyp > 0)
    gross = both & (np.abs(hyp / np.where(both, ref, 1) - 1) > 0.2)
    expected = f0_errors(ref, hyp)["voicing_error"] + gross.mean()
    assert f0_frame_error(ref, hyp) == pytest.approx(expected)


# ------------------------------------------------------------------ prosody of a wave
def _voiced(f0: float, seconds: float, lead: float = 0.3, tail: float = 0.5, sr: int = SR) -> np.ndarray:
    """Silence, a harmonic tone at ``f0`` (a glottal-pulse-like spectrum Praat tracks), silence."""
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8)) * 0.2
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    return np.concatenate([np.zeros(int(lead * sr)), tone * ramp, np.zeros(int(tail * sr))]).astype(np.float32)


def test_utterance_prosody_of_a_tone() -> None:
    wave = _voiced(150.0, 1.0)
    p = utterance_prosody(wave, SR)
    assert p["median_f0_semitones"] == pytest.approx(12 * math.log2(1.5), abs=0.05)
    assert p["f0_std_semitones"] < 0.1
    assert p["speech_seconds"] == pytest.approx(1.0, abs=0.03)  # the 0.3 s lead and 0.5 s tail are not speech
    assert p["seconds"] == pytest.approx(1.8)
    assert p["voiced_frames"] > 80
    low = utterance_prosody(_voiced(75.0, 1.0), SR)
    assert low["median_f0_semitones"] - p["median_f0_semitones"] == pytest.approx(-12.0, abs=0.1)


def test_utterance_prosody_of_silence_and_weak_speech() -> None:
    silent = utterance_prosody(np.zeros(SR, np.float32), SR)
    assert math.isnan(silent["median_f0_semitones"]) and math.isnan(silent["f0_std_semitones"])
    assert silent["speech_seconds"] == 0.0 and silent["voiced_frames"] == 0
    # a faint hiss 60 dB below the speech is not speech; a consonant 30 dB below is
    loud = _voiced(120.0, 0.5, lead=0.0, tail=0.0)
    quiet = 10 ** (-30 / 20) * np.random.default_rng(0).normal(0, 0.2, int(0.2 * SR))
    hiss = 10 ** (-60 / 20) * np.random.default_rng(1).normal(0, 0.2, int(0.4 * SR))
    wave = np.concatenate([hiss, quiet, loud, hiss]).astype(np.float32)
    assert speech_span_seconds(wave, SR) == pytest.approx(0.7, abs=0.02)


# ------------------------------------------------------------------ correlations, spread
def test_pearson_known_values_and_undefined_cases() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, [1.0, -1.0, -1.0, 1.0]) == pytest.approx(0.0, abs=1e-12)
    assert pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # NaN pairs are dropped: the remaining three lie on a line
    assert pearson([1, 2, np.nan, 4], [2, 4, 5, 8]) == pytest.approx(1.0)
    assert math.isnan(pearson(x, np.full(4, 0.3)))  # a constant side: no variation to correlate
    assert math.isnan(pearson([1.0, 2.0], [3.0, 5.0]))  # two points always lie on a line
    with pytest.raises(ValueError, match="length"):
        pearson([1, 2, 3], [1, 2])


def test_bootstrap_pearson_interval() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=1.0, size=40)
    r, lo, hi = bootstrap_pearson(x, y, n=2000, seed=3)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert lo < r < hi and 0.3 < hi - lo < 0.7  # about +-2 standard errors (1 - r^2) / sqrt(n)
    assert bootstrap_pearson(x, y, n=2000, seed=3) == (r, lo, hi)  # seeded
    assert bootstrap_pearson(x, 3 * x, n=200) == pytest.approx((1.0, 1.0, 1.0))
    assert all(math.isnan(v) for v in bootstrap_pearson(x, np.ones(40)))


def test_spread_across_seeds() -> None:
    values = np.array([[1.0, 3.0, np.nan],   # std (ddof=1) of 1, 3: sqrt(2)
                       [5.0, 5.0, 5.0],      # 0
                       [2.0, np.nan, np.nan],  # one sample: no spread, not counted
                       [0.0, 2.0, 4.0]])     # 2
    assert spread_across_seeds(values) == pytest.approx((math.sqrt(2) + 0 + 2) / 3)
    assert rows_with_spread(values) == 3
    assert math.isnan(spread_across_seeds(np.array([[1.0], [2.0]])))
    with pytest.raises(ValueError, match="utterances, seeds"):
        spread_across_seeds(np.ones(3))


# ------------------------------------------------------------------ attention
def _diagonal(t_dec: int, n: int, width: float = 0.7, jitter: float = 0.4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = np.clip((np.arange(t_dec) + 0.5) * n / t_dec - 0.5 + rng.normal(0, jitter, t_dec), 0, n - 1)
    att = np.exp(-0.5 * ((np.arange(n)[None] - centre[:, None]) / width) ** 2)
    return att / att.sum(1, keepdims=True)


def test_diagonality_and_focus() -> None:
    eye = np.eye(20)
    assert diagonality(eye, 20) == 1.0 and focus_rate(eye) == 1.0
    # anti-diagonal: row t sits at |19 - 2t| / 20 from the diagonal, within 0.2 only for t = 8..11
    assert diagonality(eye[::-1], 20) == pytest.approx(4 / 20)
    assert focus_rate(np.full((10, 20), 1 / 20)) == pytest.approx(1 / 20)
    # uniform attention: the band's share of the unit square, 1 - (1 - 0.2)^2
    assert diagonality(np.full((10, 20), 1 / 20), 20) == pytest.approx(0.36, abs=0.03)
    att = _diagonal(100, 30)
    assert diagonality(att, 30) > 0.99
    stuck = att.copy()
    stuck[50:] = np.eye(30)[10]  # stays on symbol 10 for the second half
    assert diagonality(stuck, 30) < 0.7
    padded = np.concatenate([att, np.zeros((100, 5))], axis=1)  # padding columns are ignored
    assert diagonality(padded, 30) == pytest.approx(diagonality(att, 30))
    with pytest.raises(ValueError, match="enc_len"):
        diagonality(att, 31)


def test_attention_failure_reasons() -> None:
    att = _diagonal(120, 40)
    assert attention_failure(att, 40, stop_fired=True) == (False, [])
    failed, reasons = attention_failure(att, 40, stop_fired=False)
    assert failed and reasons == ["no stop: the stop token never fired"]
    short = att[:60]  # stops halfway through the text
    failed, reasons = attention_failure(short, 40, True)
    assert failed and reasons[0].startswith("never reaches end: furthest symbol")
    # within the slack: reaching symbol 40 - END_SLACK_SYMBOLS is enough
    cut = np.eye(40)[np.minimum(np.arange(120) // 3, 40 - END_SLACK_SYMBOLS)]
    assert attention_failure(cut, 40, True) == (False, [])
    back = np.eye(40)[np.r_[np.arange(0, 30), np.arange(29 - MAX_BACKWARD_SYMBOLS - 1, 40)]]
    failed, reasons = attention_failure(back, 40, True)
    assert failed and reasons == [f"jumps back: {MAX_BACKWARD_SYMBOLS + 1} symbols at step 30"]
    flicker = np.eye(40)[np.r_[np.arange(0, 30), np.arange(29 - MAX_BACKWARD_SYMBOLS, 40)]]
    assert attention_failure(flicker, 40, True) == (False, [])
    skip = np.eye(40)[np.r_[np.arange(0, 20), np.arange(20 + MAX_FORWARD_SYMBOLS, 40)]]
    failed, reasons = attention_failure(skip, 40, True)
    assert failed and reasons == [f"skips ahead: {MAX_FORWARD_SYMBOLS + 1} symbols at step 20"]
    late_start = np.eye(40)[np.arange(10, 40)]
    assert attention_failure(late_start, 40, True)[1] == ["skips ahead: 10 symbols at step 0"]
    bad = att.copy()
    bad[3, 4] = np.nan
    assert attention_failure(bad, 40, False) == (True, ["no stop: the stop token never fired",
                                                        "non-finite: the attention weights are not all finite"])


# ------------------------------------------------------------------ one DTW path for MCD and F0
def test_aligned_f0_pairs_follow_the_path() -> None:
    ref = np.array([100.0, 110.0, 120.0, 130.0])
    hyp = np.array([200.0, 210.0, 220.0])
    # cepstrum frames are 5 ms, F0 frames 10 ms: cepstrum frame k lies in F0 frame k // 2
    i = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    j = np.array([0, 0, 1, 1, 2, 3, 4, 5])
    r, h = aligned_f0_pairs(ref, hyp, i, j, 0.01)
    assert list(zip(r, h)) == [(100, 200), (110, 200), (120, 210), (130, 220)]
    assert aligned_f0_pairs(np.zeros(0), hyp, i, j, 0.01)[0].size == 0


def test_dtw_scores_of_a_shifted_tone() -> None:
    ref = _voiced(120.0, 0.8, lead=0.1, tail=0.1)
    same = dtw_scores(ref, ref, SR)
    assert same["mcd_db"] == 0.0 and same["f0_frame_error"] == 0.0 and same["log_f0_rmse_cents"] == 0.0
    up2 = dtw_scores(ref, _voiced(120.0 * 2 ** (2 / 12), 0.8, lead=0.1, tail=0.1), SR)
    assert up2["log_f0_rmse_cents"] == pytest.approx(200, abs=10)
    assert up2["f0_frame_error"] < 0.1  # 12 % off: not a gross error
    up5 = dtw_scores(ref, _voiced(120.0 * 2 ** (5 / 12), 0.8, lead=0.1, tail=0.1), SR)
    assert up5["f0_frame_error"] > 0.6  # 33 % off on every voiced frame
    assert all(math.isnan(v) for k, v in dtw_scores(ref, ref[:10], SR).items() if k != "aligned_frames")


def test_probe_predictions_are_held_out_and_find_a_linear_signal():
    from speechunits.eval.prosody_metrics import pearson, probe_predictions

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8))
    y = 2.0 * x[:, 3] - x[:, 5] + 0.1 * rng.standard_normal(60)
    assert pearson(y, probe_predictions(x, y)) > 0.95
    noise = rng.standard_normal(60)  # nothing to find: held-out predictions do not correlate
    assert abs(pearson(noise, probe_predictions(x, noise))) < 0.4
    assert np.isnan(probe_predictions(x[:6], y[:6])).all()  # too few rows for 5 folds
