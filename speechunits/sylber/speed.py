"""Speed perturbation of a training batch (Kaldi-style: tempo and pitch change together).

With probability ``prob`` an utterance is resampled so that it plays ``factor`` times faster
(``factor`` drawn uniformly from ``factor_range``; 1.1 is 10 % shorter). It is applied to the
crop BEFORE both teacher and student, so they stay aligned; stage-1 segments (frames) are
scaled by ``1 / factor`` with :func:`scale_segments`. The factor is rounded to a fraction with
a small denominator (``torchaudio.functional.resample`` is cheap only for such ratios): the
rounded factor is the one returned and the one the segments must be scaled by. A crop made
longer (factor < 1) is cut at the batch's padded width, so the batch never grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torchaudio.functional as taf

from speechunits.errors import ConfigError

MAX_DENOMINATOR = 200  # factor rounding: fractions near 1 are 1/200 apart (about 1 ms per 2 s crop)


def speed_ratio(factor: float) -> Fraction:
    """``factor`` as the nearest fraction whose denominator is at most :data:`MAX_DENOMINATOR`."""
    return Fraction(factor).limit_denominator(MAX_DENOMINATOR)


def change_speed(wav: torch.Tensor, ratio: Fraction) -> torch.Tensor:
    """``wav`` (S,) played ``ratio`` times faster: ``ceil(S / ratio)`` samples."""
    if ratio == 1 or wav.numel() == 0:
        return wav
    return taf.resample(wav.float(), ratio.numerator, ratio.denominator).to(wav.dtype)


def scale_segments(segments: np.ndarray, factor: float, num_frames: int) -> np.ndarray:
    """(N, 2) [start, end) frames of the original crop -> frames after speeding it up by ``factor``,
    clipped to ``[0, num_frames)``; segments left empty are dropped."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    if factor != 1:
        seg = np.rint(seg / float(factor))
    seg = np.clip(seg, 0, num_frames).astype(np.int64)
    return seg[seg[:, 1] > seg[:, 0]]


@dataclass
class SpeedPerturber:
    """Per-utterance speed perturbation of a (B, L) batch (module docstring)."""

    prob: float = 0.0
    factor_range: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(None, f"task.augment.speed.prob must be in [0, 1], got {self.prob}")
        lo, hi = self.factor_range
        if not 0.0 < lo <= hi:
            raise ConfigError(None, f"task.augment.speed.factor_range must satisfy 0 < lo <= hi, got {[lo, hi]}")

    def draw(self, batch: int, generator: torch.Generator) -> list[Fraction]:
        """Each utterance's (rounded) factor; 1 for those not perturbed. Draws on the generator's device."""
        chosen = torch.rand(batch, generator=generator, device=generator.device) < self.prob
        lo, hi = self.factor_range
        factors = torch.rand(batch, generator=generator, device=generator.device) * (hi - lo) + lo
        return [speed_ratio(float(f)) if c else Fraction(1) for c, f in zip(chosen.tolist(), factors.tolist())]

    def apply(self, wavs: torch.Tensor, lengths: torch.Tensor,
              factors: list[Fraction]) -> tuple[torch.Tensor, torch.Tensor]:
        """The perturbed batch and its lengths, at most ``L`` wide (longer crops are cut at the end)."""
        if all(f == 1 for f in factors):
            return wavs, lengths
        width = wavs.shape[1]
        rows, new_lengths = [], []
        for wav, n, ratio in zip(wavs, lengths.tolist(), factors):
            out = change_speed(wav[:n], ratio)[:width]
            rows.append(out)
            new_lengths.append(out.numel())
        out = wavs.new_zeros(len(rows), max(new_lengths))
        for b, row in enumerate(rows):
            out[b, :row.numel()] = row
        return out, torch.tensor(new_lengths, dtype=lengths.dtype, device=lengths.device)

    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[Fraction]]:
        """Draw the factors and apply them: (wavs, lengths, factors)."""
        if self.prob <= 0.0:
            return wavs, lengths, [Fraction(1)] * wavs.shape[0]
        factors = self.draw(wavs.shape[0], generator)
        return (*self.apply(wavs, lengths, factors), factors)

