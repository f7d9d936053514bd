"""Noise augmentation of the student's input (Sylber stages 1 and 2).

With probability ``augment_prob`` an utterance gets an interferer added at a random
magnitude. The interferer is, with probability ``utterance_mix_ratio``, another utterance
of the same batch, kept only on a random left or right part of the crop (a partially
overlapping talker), otherwise noise: a random crop from ``noise_dir`` when given, else
synthetic coloured noise (white, pink or brown). All randomness comes from one
``torch.Generator`` so the augmentation is reproducible and resumable. The draws and the
mixing happen on the generator's device: a generator on the batch's device keeps a GPU batch
on the GPU, and a CPU generator gives the same numbers as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechunits.errors import ConfigError

COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def coloured_noise(shape: tuple[int, int], exponent: float, generator: torch.Generator) -> torch.Tensor:
    """Unit-variance Gaussian noise with a 1/f^exponent power spectrum, (B, L), on the generator's device."""
    batch, length = shape
    white = torch.randn(batch, length, generator=generator, device=generator.device)
    if exponent == 0.0:
        return white
    spec = torch.fft.rfft(white, dim=-1)
    freqs = torch.arange(spec.shape[-1], dtype=torch.float32, device=generator.device)
    freqs[0] = 1.0
    spec = spec / freqs.pow(exponent / 2.0)
    noise = torch.fft.irfft(spec, n=length, dim=-1)
    return noise / noise.std(dim=-1, keepdim=True).clamp_min(1e-8)


@dataclass
class NoiseBank:
    """Noise waveforms (16 kHz, unit variance) loaded from a directory of wav/flac files."""

    waves: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def from_dir(cls, noise_dir: str | Path, sample_rate: int = 16000) -> "NoiseBank":
        """Load every audio file under ``noise_dir``; bad files raise AudioError naming them."""
        from speechunits.audio import load_audio

        root = Path(noise_dir)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".wav", ".flac"})
        if not files:
            raise ConfigError(root, "noise directory has no .wav/.flac files")
        waves = []
        for path in files:
            wav = torch.from_numpy(np.ascontiguousarray(load_audio(path, target_sr=sample_rate)))
            waves.append(wav / wav.std().clamp_min(1e-8))
        return cls(waves)

    def sample(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, length) random crops (looped when a file is shorter than ``length``), on the
        generator's device (the waveforms stay in CPU memory)."""
        out = torch.empty(batch, length)
        for b in range(batch):
            wav = self.waves[int(torch.randint(len(self.waves), (1,), generator=generator, device=generator.device))]
            reps = -(-length // wav.numel()) + 1
            looped = wav.repeat(reps)
            start = int(torch.randint(looped.numel() - length + 1, (1,), generator=generator, device=generator.device))
            out[b] = looped[start:start + length]
        return out.to(generator.device)


@dataclass
class NoiseAugmenter:
    """Batch-level interferer mixing; call on a (B, L) waveform batch."""

    augment_prob: float = 0.2
    utterance_mix_ratio: float = 0.25
    shift_range: tuple[float, float] = (0.0, 0.7)
    magnitude_range: tuple[float, float] = (0.05, 0.7)
    utterance_magnitude_max: float = 0.2
    colour: str = "pink"
    noise_bank: NoiseBank | None = None

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ConfigError(None, f"unknown noise colour {self.colour!r}; expected one of {sorted(COLOURS)}")
        for name in ("augment_prob", "utterance_mix_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(None, f"{name} must be in [0, 1], got {getattr(self, name)}")

    def _uniform(self, n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo

    def __call__(self, wavs: torch.Tensor, generator: torch.Generator,
                 lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return an augmented copy of ``wavs`` (B, L) on its device; padding beyond ``lengths``
        stays zero. Pass a generator on ``wavs``' device to avoid a round trip through another."""
        batch, length = wavs.shape
        dev, gen_dev = wavs.device, generator.device
        augmented = torch.rand(batch, generator=generator, device=gen_dev) < self.augment_prob
        mix_utt = torch.rand(batch, generator=generator, device=gen_dev) < self.utterance_mix_ratio
        if self.noise_bank is not None:
            noise = self.noise_bank.sample(batch, length, generator)
        else:
            noise = coloured_noise((batch, length), COLOURS[self.colour], generator)
        # Interfering utterances: a random other utterance, kept on one side of a cut point.
        perm = torch.randperm(batch, generator=generator, device=gen_dev)
        cut = self._uniform(batch, *self.shift_range, generator)
        ramp = torch.linspace(0.0, 1.0, length, device=gen_dev)
        from_left = torch.rand(batch, generator=generator, device=gen_dev) < 0.5
        keep = torch.where(from_left[:, None], ramp[None, :] > cut[:, None], ramp.flip(0)[None, :] > cut[:, None])
        other = wavs.detach().to(gen_dev)[perm] * keep
        interferer = torch.where(mix_utt[:, None], other, noise)
        magnitude = torch.where(mix_utt,
                                self._uniform(batch, self.magnitude_range[0], self.utterance_magnitude_max, generator),
                                self._uniform(batch, *self.magnitude_range, generator))
        gain = (magnitude * augmented)[:, None]
        out = wavs + (gain * interferer).to(dev, wavs.dtype)
        if lengths is not None:
            valid = torch.arange(length, device=dev)[None, :] < lengths.to(dev)[:, None]
            out = out * valid
        return out
