"""Sylber training augmentations beyond noise: speed, pitch, reverb (task.augment)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from speechunits.errors import ConfigError
from speechunits.sylber.augmentations import Augmentations
from speechunits.sylber.pitch import PitchShifter, pitch_ratio, shift_pitch
from speechunits.sylber.reverb import ReverbAugmenter, synthetic_rirs
from speechunits.sylber.speed import SpeedPerturber, change_speed, scale_segments, speed_ratio
from speechunits.sylber.train_task import _opts
from speechunits.train.config import load_config

SR = 16000
HOP = 320


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def generators(seed: int = 0):  # noqa: ANN201 - the GeneratorFor of a test
    return lambda kind, device: torch.Generator(device=device).manual_seed(seed * 10 + len(kind))


def speech_like_batch(batch: int = 4, length: int = 2 * SR) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic bursts, rows of different lengths, zero padding."""
    rng = np.random.default_rng(0)
    wavs = torch.zeros(batch, length)
    lengths = torch.tensor([length - b * 3000 for b in range(batch)])
    t = torch.arange(length) / SR
    for b in range(batch):
        f0 = float(rng.uniform(100, 200))
        tone = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
        env = (torch.sin(2 * math.pi * 3 * t) > 0).float()
        wavs[b, :lengths[b]] = (0.2 * tone * env)[:lengths[b]]
    return wavs, lengths


# -- disabled, config -------------------------------------------------------------------------

def test_disabled_is_identity() -> None:
    wavs, lengths = speech_like_batch()
    for options in (None, {}, {"speed": {"prob": 0}, "pitch": {"prob": 0.0}, "reverb": {"prob": 0}}):
        aug = Augmentations.from_options(options)
        assert aug.enabled == []
        w, n, factors = aug.both(wavs, lengths, generators())
        assert w is wavs and n is lengths and factors is None
        assert aug.student(wavs, lengths, generators()) is wavs


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown task.augment kinds \['echo'\].*task.noise"):
        Augmentations.from_options({"echo": {"prob": 1}})
    with pytest.raises(ConfigError, match=r"unknown task.augment.speed options \['range'\]"):
        Augmentations.from_options({"speed": {"prob": 1, "range": [0.9, 1.1]}})
    with pytest.raises(ConfigError, match=r"rt60_range must be \[lo, hi\]"):
        Augmentations.from_options({"reverb": {"rt60_range": 0.5}})
    with pytest.raises(ConfigError, match="prob must be in"):
        Augmentations.from_options({"pitch": {"prob": 2}})
    with pytest.raises(ConfigError, match="factor_range must satisfy"):
        Augmentations.from_options({"speed": {"factor_range": [1.1, 0.9]}})
    aug = Augmentations.from_options({"speed": {"prob": 0.5, "factor_range": [0.95, 1.05]},
                                      "reverb": {"prob": 0.1}})
    assert aug.enabled == ["speed", "reverb"] and aug.speed.factor_range == (0.95, 1.05)


# -- speed ------------------------------------------------------------------------------------

def test_speed_lengths_padding_and_determinism() -> None:
    wavs, lengths = speech_like_batch()
    speed = SpeedPerturber(prob=1.0, factor_range=(0.9, 1.1))
    out, new_lengths, factors = speed(wavs, lengths, gen(3))
    assert all(f != 1 and 0.9 - 0.01 <= f <= 1.1 + 0.01 and f.denominator <= 200 for f in factors)
    for b, f in enumerate(factors):
        expected = min(math.ceil(int(lengths[b]) * f.denominator / f.numerator), wavs.shape[1])
        assert int(new_lengths[b]) == expected
        assert torch.all(out[b, expected:] == 0)
    assert out.shape == (4, int(new_lengths.max())) and out.shape[1] <= wavs.shape[1]
    again, _, factors2 = speed(wavs, lengths, gen(3))
    assert factors2 == factors and torch.equal(again, out)
    assert speed(wavs, lengths, gen(4))[2] != factors
    half = SpeedPerturber(prob=0.5)(wavs, lengths, gen(0))[2]
    assert Fraction(1) in half and any(f != 1 for f in half)


def test_speed_scales_segments_with_the_waveform() -> None:
    """Bursts on known frames: after speeding up / slowing down, the frames with energy are those
    of the scaled segments (up to one frame at each edge)."""
    frames = 100
    segments = np.array([[5, 15], [22, 30], [41, 60], [70, 90]])
    wav = torch.zeros(frames * HOP)
    t = torch.arange(wav.numel()) / SR
    for a, b in segments:
        wav[a * HOP:b * HOP] = torch.sin(2 * math.pi * 220 * t[a * HOP:b * HOP])
    for factor in (0.9, 1.1, 0.83):
        ratio = speed_ratio(factor)
        out = change_speed(wav, ratio)
        assert out.numel() == math.ceil(wav.numel() / ratio)
        n = out.numel() // HOP
        energy = out[:n * HOP].view(n, HOP).pow(2).mean(dim=1)
        scaled = scale_segments(segments, ratio, n)
        inside = np.zeros(n, bool)
        for a, b in scaled:
            inside[a:b] = True
        loud = (energy > 0.05).numpy()
        edges = np.zeros(n, bool)
        for a, b in scaled:
            edges[max(a - 1, 0):a + 1] = edges[max(b - 1, 0):b + 1] = True
        assert np.array_equal(loud[~edges], inside[~edges]), factor
        assert len(scaled) == len(segments)
    assert scale_segments(segments, Fraction(1), 50).tolist() == [[5, 15], [22, 30], [41, 50]]


# -- pitch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("semitones", [-2.0, -0.5, 1.0, 2.0])
def test_pitch_shift_moves_the_peak_of_a_sine(semitones: float) -> None:
    n = 2 * SR
    wav = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(n) / SR)
    out = shift_pitch(wav, pitch_ratio(semitones))
    assert out.shape == wav.shape
    mid = out[4000:-4000] * torch.hann_window(n - 8000)
    peak = float(torch.fft.rfft(mid).abs().argmax()) * SR / (n - 8000)
    assert peak / 440 == pytest.approx(2 ** (semitones / 12), rel=0.004)
    assert float(out.pow(2).mean().sqrt()) == pytest.approx(float(wav.pow(2).mean().sqrt()), rel=0.05)


def test_pitch_shifter_keeps_lengths_and_is_deterministic() -> None:
    wavs, lengths = speech_like_batch()
    shifter = PitchShifter(prob=0.5, semitone_range=(-2, 2))
    out = shifter(wavs, lengths, gen(1))
    assert out.shape == wavs.shape and torch.equal(shifter(wavs, lengths, gen(1)), out)
    changed = [not torch.equal(out[b], wavs[b]) for b in range(4)]
    assert any(changed) and not all(changed)
    for b in range(4):
        assert torch.all(out[b, lengths[b]:] == 0)


# -- reverb -----------------------------------------------------------------------------------

def decay_rt60(rir: np.ndarray, sample_rate: int = SR) -> float:
    """RT60 from the Schroeder energy decay curve: the -5..-25 dB slope, extrapolated to 60 dB."""
    edc = np.cumsum((rir ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    idx = np.nonzero((edc_db <= -5) & (edc_db >= -25))[0]
    slope, _ = np.polyfit(idx / sample_rate, edc_db[idx], 1)
    return -60.0 / slope


def test_synthetic_rir_decays_at_the_requested_rt60() -> None:
    rt60 = torch.tensor([0.2, 0.45, 0.8])
    rirs = synthetic_rirs(rt60, torch.tensor([3.0, 3.0, 3.0]), int(0.8 * SR), gen(0))
    assert torch.all(rirs[:, 0] == 1.0)  # the direct path, at lag 0
    for b in range(3):
        tail = rirs[b, 1:].numpy().astype(np.float64)
        assert decay_rt60(tail) == pytest.approx(float(rt60[b]), rel=0.1)
        assert 10 * np.log10(1.0 / (tail ** 2).sum()) == pytest.approx(3.0, abs=1e-3)  # the DRR


def test_reverb_keeps_level_alignment_and_padding() -> None:
    wavs, lengths = speech_like_batch()
    wavs[0] = 0.0
    wavs[0, 8000] = 1.0  # a click: the reverberant click must peak where it was
    reverb = ReverbAugmenter(prob=1.0, rt60_range=(0.3, 0.6), drr_range=(0.0, 6.0), early_reflections=4)
    out = reverb(wavs, lengths, gen(2))
    assert out.shape == wavs.shape and torch.equal(reverb(wavs, lengths, gen(2)), out)
    assert int(out[0].abs().argmax()) == 8000 and float(out[0, :8000].abs().max()) < 1e-6  # causal, not delayed
    for b in range(4):
        n = int(lengths[b])
        assert torch.all(out[b, n:] == 0)
        assert float(out[b, :n].pow(2).mean()) == pytest.approx(float(wavs[b, :n].pow(2).mean()), rel=1e-3)
        if b:
            assert not torch.allclose(out[b], wavs[b], atol=1e-3)
    partly = ReverbAugmenter(prob=0.5)(wavs, lengths, gen(5))
    same = [torch.equal(partly[b], wavs[b]) for b in range(4)]
    assert any(same) and not all(same)


# -- the real-speech configs ------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2])
def test_real_configs_are_the_paper_configs_plus_augmentation(stage: int) -> None:
    conf = Path(__file__).resolve().parents[1] / "recipes" / "conf"
    real = OmegaConf.to_container(OmegaConf.load(conf / f"sylber_stage{stage}_real.yaml"))
    paper = OmegaConf.to_container(OmegaConf.load(conf / f"sylber_stage{stage}.yaml"))
    augment = real["task"].pop("augment")
    assert real == paper
    assert Augmentations.from_options(augment).enabled == ["speed", "pitch", "reverb"]
    cfg = load_config(conf / f"sylber_stage{stage}_real.yaml", ["task.data=d", "task.segments=s",
                                                                 "task.augment.pitch.prob=0"])
    opts = _opts(cfg)  # every key known to the task
    assert Augmentations.from_options(opts["augment"]).enabled == ["speed", "reverb"]
