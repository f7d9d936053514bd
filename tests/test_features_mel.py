"""LogMel: T // hop frames for any length, equal to an independent numpy-filterbank + torch.stft reference,
silence value, config checks; Griffin-Lim of a tone's log-mel gives back the tone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.errors import ConfigError
from speechunits.features.griffin_lim import griffin_lim
from speechunits.features.mel import SILENCE_LOG_MEL, LogMel, MelConfig, num_mel_frames

CONFIGS = [MelConfig(), MelConfig(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, f_max=None),
           MelConfig(n_fft=1024, win_length=800, hop_length=275, n_mels=64)]  # odd n_fft - hop, win < n_fft


@pytest.mark.parametrize("cfg", CONFIGS, ids=["16k-160", "22k-256", "odd-pad"])
def test_frames_are_samples_floor_hop(cfg: MelConfig) -> None:
    mel = LogMel(cfg)
    hop = cfg.hop_length
    lengths = sorted({0, 1, hop - 1, hop, hop + 1, cfg.padding[1], cfg.padding[1] + 1, cfg.n_fft - 1, cfg.n_fft,
                      cfg.n_fft + 1, 3 * hop + 7, 4000, 16000, 16000 + hop - 1, 12345})
    for n in lengths:
        out = mel(torch.randn(n))
        assert out.shape == (cfg.n_mels, n // hop) == (cfg.n_mels, num_mel_frames(n, hop)), n
        assert torch.isfinite(out).all()
    batch = mel(torch.randn(3, 5 * hop + 3))
    assert batch.shape == (3, cfg.n_mels, 5)


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), mel * 200.0 / 3.0)


def _reference_filterbank(cfg: MelConfig) -> np.ndarray:
    """Slaney-scale triangles, each scaled to unit area (2 / bandwidth), written from the formulas."""
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = _slaney_hz(np.linspace(_slaney_mel(cfg.f_min), _slaney_mel(cfg.f_max or cfg.sample_rate / 2),
                                   cfg.n_mels + 2))
    fb = np.zeros((cfg.n_mels, freqs.size))
    for m in range(cfg.n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)
    return fb


def _reference_log_mel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    total = cfg.n_fft - cfg.hop_length
    padded = np.pad(wave.astype(np.float64), (total // 2, total - total // 2), mode="reflect")
    window = np.zeros(cfg.n_fft)
    start = (cfg.n_fft - cfg.win_length) // 2
    window[start:start + cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.win_length) / cfg.win_length)
    spec = torch.stft(torch.from_numpy(padded), cfg.n_fft, hop_length=cfg.hop_length, window=torch.from_numpy(window),
                      center=False, return_complex=True).numpy()
    mag = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    return np.log(np.maximum(_reference_filterbank(cfg) @ mag, cfg.log_floor))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["16k-160", "22k-256", "odd-pad"])
def test_log_mel_matches_reference(cfg: MelConfig) -> None:
    rng = np.random.default_rng(0)
    n = int(0.4 * cfg.sample_rate) + 37
    t = np.arange(n) / cfg.sample_rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    ours = LogMel(cfg)(torch.from_numpy(wave)).numpy()
    ref = _reference_log_mel(wave, cfg)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_silence_and_config() -> None:
    assert SILENCE_LOG_MEL == pytest.approx(math.log(1e-5))
    assert MelConfig().silence_log_mel == SILENCE_LOG_MEL
    silent = LogMel(MelConfig())(torch.zeros(1600))
    assert torch.allclose(silent, torch.full_like(silent, SILENCE_LOG_MEL))
    cfg = MelConfig.from_dict({"hop_length": 256, "f_max": None})
    assert MelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        MelConfig.from_dict({"hop": 256})
    with pytest.raises(ConfigError, match="hop_length"):
        MelConfig(hop_length=2048)
    with pytest.raises(ConfigError, match="f_max"):
        MelConfig(sample_rate=8000, f_max=8000.0)


def test_module_is_differentiable_and_stateless() -> None:
    mel = LogMel(MelConfig())
    assert mel.state_dict() == {}  # window and filterbank are not checkpointed
    wave = torch.randn(2, 3200, requires_grad=True)
    mel(wave).sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_frame_centres() -> None:
    """Frame i is centred on sample i * hop + hop / 2: a click shows up strongest in the frame it sits in the middle of."""
    cfg = MelConfig()
    for frame in (3, 10, 17):
        wave = torch.zeros(20 * cfg.hop_length)
        wave[frame * cfg.hop_length + cfg.hop_length // 2] = 1.0
        energy = LogMel(cfg)(wave).exp().sum(0)
        assert int(energy.argmax()) == frame


def _dominant_hz(wave: np.ndarray, sample_rate: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spec) * sample_rate / len(wave))


@pytest.mark.parametrize("hz", [300.0, 1000.0])
def test_griffin_lim_gives_back_the_tone(hz: float) -> None:
    cfg = MelConfig()
    n = 8000
    tone = (0.5 * np.sin(2 * np.pi * hz * np.arange(n) / cfg.sample_rate)).astype(np.float32)
    log_mel = LogMel(cfg)(torch.from_numpy(tone))
    out = griffin_lim(log_mel, cfg, n_iter=32)
    assert out.shape == (log_mel.shape[1] * cfg.hop_length,) and out.dtype == torch.float32
    wave = out.numpy()
    assert abs(_dominant_hz(wave[1000:-1000], cfg.sample_rate) - hz) < 0.03 * hz
    rms_in, rms_out = np.sqrt(np.mean(tone ** 2)), np.sqrt(np.mean(wave[1000:-1000] ** 2))
    assert 0.5 < rms_out / rms_in < 2.0
    again = griffin_lim(log_mel, cfg, n_iter=32)
    assert torch.equal(out, again)  # seeded: deterministic
    with pytest.raises(ValueError, match="n_mels"):
        griffin_lim(log_mel[:10], cfg)
