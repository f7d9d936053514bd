"""Sylber training objective pieces: targets, loss, adaptive threshold, noise augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.errors import ConfigError
from speechunits.sylber.augment import NoiseAugmenter, NoiseBank, coloured_noise
from speechunits.sylber.losses import distillation_loss, segment_average_targets
from speechunits.sylber.thresholder import AdaptiveNormThreshold, gaussian_crossing


def test_segment_average_targets_by_hand() -> None:
    teacher = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 8.0]]])
    target = segment_average_targets(teacher, [np.array([[0, 2], [3, 5]])])
    expected = torch.tensor([[[2.0, 1.0], [2.0, 1.0], [0.0, 0.0], [8.0, 7.0], [8.0, 7.0]]])
    assert torch.equal(target, expected)


def test_segment_average_targets_rescaled_to_a_common_norm() -> None:
    teacher = torch.tensor([[[3.0, 0.0], [3.0, 8.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    target = segment_average_targets(teacher, [np.array([[0, 2], [3, 5]])], target_norm=10.0)
    # means (3, 4) and (1, 0): same directions, norm 10 each; silence stays 0
    expected = torch.tensor([[[6.0, 8.0], [6.0, 8.0], [0.0, 0.0], [10.0, 0.0], [10.0, 0.0]]])
    assert torch.allclose(target, expected)


def test_distillation_loss_ignores_padding() -> None:
    student = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [100.0, 100.0]]])
    target = torch.zeros_like(student)
    mask = torch.tensor([[True, True, False]])
    # frames: 2, 0 (padding excluded) -> mean 1.0
    assert distillation_loss(student, target, mask).item() == pytest.approx(1.0)
    assert distillation_loss(student, target).item() == pytest.approx((2 + 0 + 20000) / 3)


def test_crossing_of_equal_variances_is_midpoint() -> None:
    assert gaussian_crossing(6.0, 1.0, 2.0, 1.0) == pytest.approx(4.0)


def test_crossing_equalises_densities() -> None:
    mu_s, var_s, mu_n, var_n = 6.1, 0.87, 0.34, 0.34
    x = gaussian_crossing(mu_s, var_s, mu_n, var_n)

    def pdf(v: float, mu: float, var: float) -> float:
        return math.exp(-((v - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)

    assert mu_n < x < mu_s
    assert pdf(x, mu_s, var_s) == pytest.approx(pdf(x, mu_n, var_n), rel=1e-6)


def test_reference_start_is_about_2_6() -> None:
    assert AdaptiveNormThreshold().threshold == pytest.approx(2.6, abs=0.01)


def test_threshold_tracks_the_data_and_resumes() -> None:
    thr = AdaptiveNormThreshold(decay=0.5)
    start = thr.threshold
    for _ in range(20):
        thr.update(torch.full((10,), 12.0), torch.full((10,), 4.0))
    assert 4.0 < thr.threshold < 12.0 and thr.threshold > start + 2
    copy = AdaptiveNormThreshold()
    copy.load_state_dict(thr.state_dict())
    assert copy.threshold == thr.threshold
    fixed = AdaptiveNormThreshold(fixed=3.0)
    fixed.update(torch.ones(3), torch.ones(3))
    assert fixed.threshold == 3.0


def test_update_from_features_splits_at_threshold() -> None:
    thr = AdaptiveNormThreshold(decay=0.0)
    feats = torch.zeros(1, 4, 2)
    feats[0, :2, 0] = 10.0  # speech norms 10
    feats[0, 2:, 0] = 1.0   # silence norms 1
    thr.update_from_features(feats)
    assert thr.speech_mean == pytest.approx(10.0) and thr.silence_mean == pytest.approx(1.0)


def test_augmenter_is_reproducible_and_keeps_padding_zero() -> None:
    wavs = torch.randn(6, 800)
    lengths = torch.tensor([800, 700, 600, 500, 400, 300])
    wavs = wavs * (torch.arange(800)[None] < lengths[:, None])
    aug = NoiseAugmenter(augment_prob=1.0, utterance_mix_ratio=0.5)
    a = aug(wavs, torch.Generator().manual_seed(1), lengths)
    b = aug(wavs, torch.Generator().manual_seed(1), lengths)
    assert torch.equal(a, b)
    assert not torch.equal(a, wavs)
    for i, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(a[i, n:]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augmenter_draws_on_the_batch_device() -> None:
    wavs, lengths = torch.randn(4, 800, device="cuda"), torch.tensor([800, 700, 600, 500], device="cuda")
    aug = NoiseAugmenter(augment_prob=1.0, utterance_mix_ratio=0.5)
    a = aug(wavs, torch.Generator(device="cuda").manual_seed(3), lengths)
    assert a.is_cuda and not torch.equal(a, wavs)
    assert torch.equal(a, aug(wavs, torch.Generator(device="cuda").manual_seed(3), lengths))
    assert torch.count_nonzero(a[3, 500:]) == 0


def test_augmenter_probability_zero_is_identity() -> None:
    wavs = torch.randn(3, 100)
    out = NoiseAugmenter(augment_prob=0.0)(wavs, torch.Generator().manual_seed(0))
    assert torch.equal(out, wavs)


def test_pink_noise_has_more_low_frequency_power() -> None:
    gen = torch.Generator().manual_seed(0)
    white = coloured_noise((4, 16000), 0.0, gen)
    pink = coloured_noise((4, 16000), 1.0, gen)

    def low_share(x: torch.Tensor) -> float:
        power = torch.fft.rfft(x).abs().pow(2).mean(0)
        return float(power[1:400].sum() / power[1:].sum())

    assert low_share(pink) > 3 * low_share(white)


def test_noise_bank_from_dir(tmp_path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "n.wav", np.random.default_rng(0).normal(size=300).astype(np.float32) * 0.1, 16000)
    bank = NoiseBank.from_dir(tmp_path)
    crops = bank.sample(2, 1000, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 1000) and torch.isfinite(crops).all()
    with pytest.raises(ConfigError, match="no .wav"):
        NoiseBank.from_dir(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_bad_augmenter_config() -> None:
    with pytest.raises(ConfigError, match="colour"):
        NoiseAugmenter(colour="purple")
