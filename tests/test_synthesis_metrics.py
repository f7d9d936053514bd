"""Synthesis metrics: mel cepstra, DTW-aligned MCD, F0 errors, STOI, unit edit distance, CER/WER."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.eval.mcd import MCD_SCALE, dtw_path, mel_cepstrum
from speechunits.eval.synthesis_metrics import (
    error_rates,
    f0_errors,
    mcd_dtw,
    stoi_score,
    unit_edit_distance,
)

SR = 16000


def voiced_bursts(seed: int, scale: float = 1.0) -> np.ndarray:
    """Five harmonic bursts of random pitch and timbre with short pauses; ``scale`` stretches every duration
    (same pitches and spectra: a slower copy of the same 'utterance')."""
    rng = np.random.default_rng(seed)
    wave = np.zeros(int(1.2 * scale * SR))
    pos = 0.05
    for _ in range(5):
        dur, f0, amps = rng.uniform(0.1, 0.2), rng.uniform(100, 250), rng.uniform(0.2, 1.0, 12)
        start, n = int(pos * scale * SR), int(dur * scale * SR)
        t = np.arange(n) / SR
        wave[start:start + n] += 0.3 * np.hanning(n) * sum(np.sin(2 * np.pi * f0 * h * t) * amps[h - 1] / h
                                                            for h in range(1, 13))
        pos += dur + 0.03
    return wave + 1e-3 * np.random.default_rng(seed + 100).standard_normal(wave.size)


@pytest.fixture(scope="module")
def utt() -> np.ndarray:
    return voiced_bursts(1)


def test_mel_cepstrum_shape_and_level_invariance(utt: np.ndarray) -> None:
    cep = mel_cepstrum(utt, SR)
    assert cep.shape == (len(utt) // 80, 24)  # 5 ms hop
    assert mel_cepstrum(utt, SR, n_coeffs=13).shape == (len(utt) // 80, 13)
    np.testing.assert_allclose(mel_cepstrum(3.0 * utt, SR), cep, atol=1e-8)  # c0 (level) is dropped
    assert mel_cepstrum(utt[:50], SR).shape == (0, 24)
    assert mel_cepstrum(voiced_bursts(1, 1.5)[:22050], 22050).shape == (22050 // 110, 24)  # hop round(110.25)


def test_mcd_identical_is_zero_and_grows_with_noise(utt: np.ndarray) -> None:
    assert mcd_dtw(utt, utt, SR) == 0.0
    rng = np.random.default_rng(0)
    scores = [mcd_dtw(utt, utt + level * rng.standard_normal(utt.size), SR) for level in (0.003, 0.01, 0.03)]
    assert 0 < scores[0] < scores[1] < scores[2]
    noisy = utt + 0.01 * rng.standard_normal(utt.size)
    assert mcd_dtw(noisy, utt, SR) == pytest.approx(mcd_dtw(utt, noisy, SR), rel=0.05)
    assert math.isnan(mcd_dtw(utt, utt[:10], SR))


def test_mcd_dtw_aligns_time_stretched_copies(utt: np.ndarray) -> None:
    other = mcd_dtw(utt, voiced_bursts(2), SR)
    slower, faster = mcd_dtw(utt, voiced_bursts(1, 1.25), SR), mcd_dtw(utt, voiced_bursts(1, 0.8), SR)
    assert slower < 0.5 * other and faster < 0.5 * other
    # without alignment (frame by frame over the shorter length) the stretched copy looks far worse
    a, b = mel_cepstrum(utt, SR), mel_cepstrum(voiced_bursts(1, 1.25), SR)
    unaligned = MCD_SCALE * np.linalg.norm(a - b[:len(a)], axis=1).mean()
    assert slower < 0.6 * unaligned


def test_dtw_path_properties() -> None:
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    b = np.array([[0.0], [0.0], [1.0], [1.0], [2.0], [3.0]])  # a with its first two frames doubled
    i, j, dist = dtw_path(a, b)
    assert (i[0], j[0]) == (0, 0) and (i[-1], j[-1]) == (3, 5)
    assert (np.diff(i) >= 0).all() and (np.diff(j) >= 0).all() and (np.diff(i) + np.diff(j) >= 1).all()
    assert (np.diff(i) <= 1).all() and (np.diff(j) <= 1).all()
    assert (dist == 0).all() and len(i) == 6
    with pytest.raises(ValueError):
        dtw_path(a, np.zeros((0, 1)))
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 4), (3, 4), (5, 3), (4, 6)]:  # the path's cost is the least over all monotone paths
        x, y = rng.standard_normal((n, 2)), rng.standard_normal((m, 2))
        _i, _j, dist = dtw_path(x, y)
        assert dist.sum() == pytest.approx(_best_path_cost(x, y))


def _best_path_cost(x: np.ndarray, y: np.ndarray) -> float:
    """Exhaustive search over every path of steps (1,1), (1,0), (0,1) from (0,0) to the last frames."""
    def best(i: int, j: int) -> float:
        here = float(np.linalg.norm(x[i] - y[j]))
        if (i, j) == (len(x) - 1, len(y) - 1):
            return here
        nexts = [(i + di, j + dj) for di, dj in ((1, 1), (1, 0), (0, 1)) if i + di < len(x) and j + dj < len(y)]
        return here + min(best(a, b) for a, b in nexts)

    return best(0, 0)


def test_f0_errors() -> None:
    ref = np.array([0, 100, 100, 200, 0, 150], np.float32)
    hyp = np.array([0, 100, 200, 0, 120, 150, 99, 99], np.float32)  # longer: compared over the first 6 frames
    out = f0_errors(ref, hyp)
    assert out["frames"] == 6 and out["voiced_both"] == 3
    assert out["voicing_error"] == pytest.approx(2 / 6)
    assert out["log_f0_rmse_cents"] == pytest.approx(math.sqrt(1200.0 ** 2 / 3))  # one octave off in 1 of 3
    same = f0_errors(ref, ref)
    assert same["log_f0_rmse_cents"] == 0.0 and same["voicing_error"] == 0.0
    semitone = f0_errors(ref, np.where(ref > 0, ref * 2 ** (1 / 12), 0))
    assert semitone["log_f0_rmse_cents"] == pytest.approx(100.0, rel=1e-4)
    none = f0_errors(np.array([0, 100.0]), np.array([120.0, 0]))
    assert math.isnan(none["log_f0_rmse_cents"]) and none["voicing_error"] == 1.0
    assert math.isnan(f0_errors(np.zeros(0), np.zeros(3))["voicing_error"])


def test_stoi(utt: np.ndarray) -> None:
    assert stoi_score(utt, utt, SR) == pytest.approx(1.0, abs=1e-6)
    noisy = utt + 0.3 * np.random.default_rng(1).standard_normal(utt.size)
    assert stoi_score(utt, noisy, SR) < 0.9
    assert stoi_score(utt, np.concatenate([utt, np.zeros(500)]), SR) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("ref", "hyp", "expected"), [
    ([1, 2, 3, 4], [1, 2, 3, 4], 0.0),
    ([1, 2, 3, 4], [1, 9, 3, 4], 0.25),          # one substitution
    ([1, 2, 3, 4], [1, 3, 4], 0.25),             # one deletion
    ([1, 2, 3, 4], [1, 2, 5, 3, 4, 6], 0.5),     # two insertions
    ([1, 2, 3], [], 1.0),
    ([5, 5, 5], [3, 5, 5, 5, 3], 2 / 3),
    ([1, 2, 3, 4], [4, 3, 2, 1], 1.0),           # the reverse: no alignment beats 4 edits
    ([], [], 0.0),
])
def test_unit_edit_distance(ref: list[int], hyp: list[int], expected: float) -> None:
    assert unit_edit_distance(ref, hyp) == pytest.approx(expected)


def test_unit_edit_distance_empty_reference() -> None:
    assert math.isnan(unit_edit_distance([], [1, 2]))
    assert unit_edit_distance(np.array([7, 8]), np.array([8])) == 0.5


def test_error_rates() -> None:
    refs = ["the cat sat", "on the mat"]
    hyps = ["the cat sat", "on a mat"]
    out = error_rates(refs, hyps)
    assert out["wer"] == pytest.approx(100 * 1 / 6)
    assert out["cer"] == pytest.approx(100 * 3 / 21)  # 'the' -> 'a': one substitution + two deletions
    assert error_rates(refs, refs) == {"cer": 0.0, "wer": 0.0}
    assert error_rates(["abc"], ["abcd"])["cer"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError):
        error_rates(["a"], [])
    with pytest.raises(ValueError, match="no transcripts"):
        error_rates([], [])


def test_mcd_floors_both_sides_below_the_reference_peak() -> None:
    """Faint hiss in the pauses (60+ dB down) barely moves the MCD; audible noise still does."""
    clean = voiced_bursts(3) - 1e-3 * np.random.default_rng(103).standard_normal(int(1.2 * SR))  # true silence
    noise = np.random.default_rng(7).standard_normal(clean.size)
    faint = mcd_dtw(clean, clean + 1e-5 * noise, SR)
    loud = mcd_dtw(clean, clean + 3e-2 * noise, SR)
    assert faint < 0.5 and loud > 2.0, (faint, loud)
    from speechunits.eval.mcd import paired_cepstra

    a, b = paired_cepstra(clean, clean + 1e-5 * noise, SR)
    assert a.shape == b.shape == mel_cepstrum(clean, SR).shape
