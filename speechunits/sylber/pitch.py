"""Pitch shift of the student's input, duration unchanged.

With probability ``prob`` an utterance's pitch (and formants: every frequency) is scaled by
``2 ** (semitones / 12)``, ``semitones`` drawn uniformly from ``semitone_range``. The shift
is a phase-vocoder time stretch (STFT 512 / hop 128, ``torchaudio.functional.phase_vocoder``)
to ``ratio`` times the duration, then a resampling by ``ratio`` back to the input length, so
the student's frames stay aligned with the teacher's; the result is rescaled to the input's RMS
level (the vocoder's phase accumulation across bins loses some level). The ratio is rounded to a fraction with
a denominator of at most 200 (cheap resampling; at most 0.05 semitone of error).
This is the classic phase vocoder (librosa's ``pitch_shift`` too), with its "phasiness":
harmless for an augmentation. ``torchaudio.functional.pitch_shift`` does the same but
resamples at ``sample_rate / ratio``, which costs seconds per crop for most ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
import torchaudio.functional as taf

from speechunits.errors import ConfigError

N_FFT = 512
HOP = 128
MAX_DENOMINATOR = 200


def pitch_ratio(semitones: float) -> Fraction:
    """The frequency ratio of a shift by ``semitones``, as a fraction with a small denominator."""
    return Fraction(2.0 ** (semitones / 12.0)).limit_denominator(MAX_DENOMINATOR)


def shift_pitch(wav: torch.Tensor, ratio: Fraction) -> torch.Tensor:
    """``wav`` (S,) with every frequency scaled by ``ratio``; same length S."""
    if ratio == 1 or wav.numel() < N_FFT:
        return wav
    window = torch.hann_window(N_FFT, device=wav.device)
    spec = torch.stft(wav.float(), N_FFT, HOP, window=window, return_complex=True)
    advance = torch.linspace(0, torch.pi * HOP, N_FFT // 2 + 1, device=wav.device)[:, None]
    stretched = taf.phase_vocoder(spec, float(1 / ratio), advance)  # ratio times longer
    longer = torch.istft(stretched, N_FFT, HOP, window=window)
    out = taf.resample(longer, ratio.numerator, ratio.denominator)  # played ratio times faster
    n = wav.numel()
    if out.numel() < n:
        out = torch.nn.functional.pad(out, (0, n - out.numel()))
    out = out[:n]
    gain = wav.float().norm().clamp_min(1e-6) / out.norm().clamp_min(1e-6)
    return (out * gain).to(wav.dtype)


@dataclass
class PitchShifter:
    """Per-utterance pitch shift of a (B, L) batch (module docstring)."""

    prob: float = 0.0
    semitone_range: tuple[float, float] = (-2.0, 2.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(None, f"task.augment.pitch.prob must be in [0, 1], got {self.prob}")
        lo, hi = self.semitone_range
        if not -12.0 <= lo <= hi <= 12.0:
            raise ConfigError(None, f"task.augment.pitch.semitone_range must satisfy -12 <= lo <= hi <= 12, "
                                    f"got {[lo, hi]}")

    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Shifted copy of ``wavs`` (B, L); rows not drawn are unchanged, padding stays zero."""
        if self.prob <= 0.0:
            return wavs
        batch = wavs.shape[0]
        chosen = torch.rand(batch, generator=generator, device=generator.device) < self.prob
        lo, hi = self.semitone_range
        semitones = torch.rand(batch, generator=generator, device=generator.device) * (hi - lo) + lo
        out = wavs
        for b, (c, s, n) in enumerate(zip(chosen.tolist(), semitones.tolist(), lengths.tolist())):
            ratio = pitch_ratio(s)
            if not c or ratio == 1:
                continue
            if out is wavs:
                out = wavs.clone()
            out[b, :n] = shift_pitch(wavs[b, :n], ratio)
        return out
