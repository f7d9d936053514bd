"""Reverberation of the student's input with synthetic room impulse responses (RIRs).

An RIR is a direct-path impulse of amplitude 1 at lag 0 (so the reverberant speech is not
delayed: teacher and student stay time-aligned), optionally a few early reflections (sparse
impulses 1-30 ms after it), and a diffuse tail: Gaussian noise under an exponential envelope
that falls by 60 dB in ``rt60`` seconds, scaled to a direct-to-reverberant ratio (DRR) drawn
per utterance. Each augmented utterance is convolved with its RIR (FFT), trimmed to its input
length and rescaled to the input's RMS level. All draws come from one ``torch.Generator``, on
its device (a generator on the batch's device keeps a GPU batch on the GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from speechunits.errors import ConfigError

DECAY_60DB = 3.0 * math.log(10.0)  # amplitude envelope exp(-DECAY_60DB * t / rt60) is -60 dB at t = rt60


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo


def synthetic_rirs(rt60: torch.Tensor, drr_db: torch.Tensor, num_samples: int, generator: torch.Generator, *,
                   sample_rate: int = 16000, early_reflections: int = 0) -> torch.Tensor:
    """(B, num_samples) RIRs, one per ``rt60`` (seconds) / ``drr_db`` entry, on the generator's device.

    Index 0 holds the direct path (1.0); the tail's energy is ``10 ** (-drr_db / 10)``.
    """
    batch = rt60.numel()
    dev = generator.device
    t = torch.arange(num_samples, device=dev, dtype=torch.float32) / sample_rate
    tail = torch.randn(batch, num_samples, generator=generator, device=dev)
    tail = tail * torch.exp(-DECAY_60DB * t[None, :] / rt60.to(dev, torch.float32)[:, None])
    tail[:, 0] = 0.0
    energy = tail.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
    tail = tail * torch.sqrt(10.0 ** (-drr_db.to(dev, torch.float32)[:, None] / 10.0) / energy)
    rir = tail
    rir[:, 0] = 1.0
    if early_reflections > 0:
        lo, hi = max(1, int(0.001 * sample_rate)), max(2, int(0.030 * sample_rate))
        lags = torch.randint(lo, min(hi, num_samples), (batch, early_reflections), generator=generator, device=dev)
        signs = torch.where(torch.rand(batch, early_reflections, generator=generator, device=dev) < 0.5, -1.0, 1.0)
        gains = signs * _uniform(batch * early_reflections, 0.1, 0.6, generator).view(batch, early_reflections)
        rir = rir.scatter_add(1, lags, gains)
    return rir


def fft_convolve(wavs: torch.Tensor, rirs: torch.Tensor) -> torch.Tensor:
    """Row-wise linear convolution of (B, L) with (B, N), trimmed to the first L samples."""
    length = wavs.shape[-1]
    n = length + rirs.shape[-1] - 1
    spec = torch.fft.rfft(wavs.float(), n=n) * torch.fft.rfft(rirs.float(), n=n)
    return torch.fft.irfft(spec, n=n)[:, :length]


@dataclass
class ReverbAugmenter:
    """With probability ``prob`` per utterance, convolve it with a synthetic RIR (module docstring)."""

    prob: float = 0.0
    rt60_range: tuple[float, float] = (0.2, 0.8)
    drr_range: tuple[float, float] = (0.0, 10.0)
    early_reflections: int = 0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(None, f"task.augment.reverb.prob must be in [0, 1], got {self.prob}")
        lo, hi = self.rt60_range
        if not 0.0 < lo <= hi:
            raise ConfigError(None, f"task.augment.reverb.rt60_range must satisfy 0 < lo <= hi, got {[lo, hi]}")
        if self.drr_range[0] > self.drr_range[1]:
            raise ConfigError(None, f"task.augment.reverb.drr_range must satisfy lo <= hi, got {list(self.drr_range)}")
        if self.early_reflections < 0:
            raise ConfigError(None, f"task.augment.reverb.early_reflections must be >= 0, got {self.early_reflections}")

    @property
    def rir_samples(self) -> int:
        """RIR length: the longest RT60 of the range (its tail has decayed by 60 dB there)."""
        return max(2, math.ceil(self.rt60_range[1] * self.sample_rate))

    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Reverberant copy of ``wavs`` (B, L); rows not drawn and padding beyond ``lengths`` are unchanged / zero."""
        if self.prob <= 0.0:
            return wavs
        batch, length = wavs.shape
        dev = wavs.device
        chosen = torch.rand(batch, generator=generator, device=generator.device) < self.prob
        rt60 = _uniform(batch, *self.rt60_range, generator)
        drr = _uniform(batch, *self.drr_range, generator)
        rirs = synthetic_rirs(rt60, drr, self.rir_samples, generator, sample_rate=self.sample_rate,
                              early_reflections=self.early_reflections)
        rows = chosen.nonzero().flatten().to(dev)
        if rows.numel() == 0:
            return wavs
        valid = (torch.arange(length, device=dev)[None, :] < lengths.to(dev)[rows][:, None]).float()
        dry = wavs[rows].float() * valid
        wet = fft_convolve(dry, rirs[rows.to(rirs.device)].to(dev)) * valid
        # same number of valid samples in both: the ratio of the L2 norms is the ratio of the RMS levels
        gain = dry.norm(dim=1).clamp_min(1e-6) / wet.norm(dim=1).clamp_min(1e-6)
        out = wavs.clone()
        out[rows] = (wet * gain[:, None]).to(wavs.dtype)
        return out
