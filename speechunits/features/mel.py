"""The one log-mel spectrogram of the toolkit: vocoder input, mel L1 loss and Griffin-Lim.

Conventions (HiFi-GAN's):

* **Magnitude**, not power: ``mel = fb @ sqrt(|STFT|^2 + 1e-9)`` with a Slaney-scale,
  Slaney-normalised filterbank (librosa's default, built by
  ``torchaudio.functional.melscale_fbanks``).
* **Log**: natural log of ``clamp(mel, min=log_floor)``; silence and padding hold
  :data:`SILENCE_LOG_MEL` = ``log(1e-5)`` for the default floor.
* **Framing**: the wave is reflect-padded by ``(n_fft - hop) / 2`` on both sides (the left
  side gets the smaller half when that is odd) and framed with ``center=False`` and a Hann
  window of ``win_length`` (centred in ``n_fft``), so a wave of ``T`` samples has exactly
  ``T // hop_length`` frames, and frame ``i`` is centred on sample ``i * hop + hop / 2``.
  A wave too short to be reflected (``T <= (n_fft - hop) / 2``) is zero-padded instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from speechunits.errors import ConfigError


@dataclass
class MelConfig:
    """STFT and mel-filterbank settings (defaults: 16 kHz, 10 ms hop, 80 bands up to 8 kHz)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be > 0, got {self.sample_rate}")
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            problems.append(f"need 0 < hop_length <= win_length <= n_fft, got hop_length {self.hop_length}, "
                            f"win_length {self.win_length}, n_fft {self.n_fft}")
        if self.n_mels < 1:
            problems.append(f"n_mels must be >= 1, got {self.n_mels}")
        nyquist = self.sample_rate / 2
        top = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < top <= nyquist:
            problems.append(f"need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist:g}, got f_min {self.f_min}, "
                            f"f_max {self.f_max}")
        if not self.log_floor > 0:
            problems.append(f"log_floor must be > 0, got {self.log_floor}")
        if problems:
            raise ConfigError(None, "mel config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MelConfig:
        """Build from a mapping; ConfigError on unknown keys or impossible values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(None, f"mel config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def silence_log_mel(self) -> float:
        """The value of a silent (or padded) frame: ``log(log_floor)``."""
        return math.log(self.log_floor)

    @property
    def padding(self) -> tuple[int, int]:
        """(left, right) samples of reflect padding; they add up to ``n_fft - hop_length``."""
        total = self.n_fft - self.hop_length
        return total // 2, total - total // 2


SILENCE_LOG_MEL: float = math.log(MelConfig.log_floor)
"""``log(1e-5)``: what silent frames and padding hold under the default ``log_floor``."""


def num_mel_frames(num_samples: int, hop_length: int) -> int:
    """Frames of a ``num_samples`` wave: ``num_samples // hop_length``, always."""
    return num_samples // hop_length


def mel_filterbank(cfg: MelConfig) -> Tensor:
    """``[n_mels, n_fft // 2 + 1]`` Slaney-scale, Slaney-normalised triangular filters."""
    import torchaudio.functional as taf

    fb = taf.melscale_fbanks(cfg.n_fft // 2 + 1, f_min=cfg.f_min, f_max=cfg.f_max or cfg.sample_rate / 2,
                             n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, norm="slaney", mel_scale="slaney")
    return fb.T.contiguous()


def mel_pseudo_inverse(cfg: MelConfig, n_fft: int) -> Tensor:
    """``[n_fft // 2 + 1, n_mels]``: maps LogMel magnitudes (``exp`` of its output) back to linear STFT
    magnitudes of an ``n_fft``-point Hann analysis (Moore-Penrose pseudo-inverse of the filterbank on
    those bins, scaled by the ratio of the two windows' sums). Its output can be negative: clamp it."""
    target = MelConfig.from_dict({**cfg.to_dict(), "n_fft": n_fft, "win_length": n_fft})
    gain = float(torch.hann_window(n_fft).sum() / torch.hann_window(cfg.win_length).sum())
    return torch.linalg.pinv(mel_filterbank(target).double()).float() * gain


def pad_for_frames(wave: Tensor, cfg: MelConfig) -> Tensor:
    """``[B, T]`` -> ``[B, T + n_fft - hop]``: reflect padding (zeros when ``T`` is too short to reflect)."""
    left, right = cfg.padding
    mode = "reflect" if wave.shape[-1] > max(left, right) else "constant"
    return torch.nn.functional.pad(wave.unsqueeze(1), (left, right), mode=mode).squeeze(1)


class LogMel(torch.nn.Module):
    """Differentiable log-mel spectrogram: ``[B, T]`` -> ``[B, n_mels, T // hop]`` (``[T]`` -> ``[n_mels, F]``).

    The window and filterbank are non-persistent buffers (never in a state dict); they move
    with the module, and to the input's device when it differs. Computed in float32.
    """

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self.register_buffer("fb", mel_filterbank(cfg), persistent=False)

    def magnitude(self, wave: Tensor) -> Tensor:
        """``[B, T]`` -> linear magnitude spectrogram ``[B, n_fft // 2 + 1, T // hop]``."""
        cfg = self.cfg
        frames = num_mel_frames(wave.shape[-1], cfg.hop_length)
        if frames == 0:
            return wave.new_zeros(wave.shape[0], cfg.n_fft // 2 + 1, 0, dtype=torch.float32)
        x = pad_for_frames(wave.float(), cfg)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=self.window.to(x.device), center=False, normalized=False, onesided=True,
                          return_complex=True)
        return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)

    def forward(self, wave: Tensor) -> Tensor:
        single = wave.dim() == 1
        if single:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"LogMel expects a wave [T] or [B, T], got shape {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mag = self.magnitude(wave)
            mel = torch.matmul(self.fb.to(mag.device), mag)
            out = torch.log(torch.clamp(mel, min=self.cfg.log_floor))
        return out[0] if single else out


__all__ = ["SILENCE_LOG_MEL", "LogMel", "MelConfig", "mel_filterbank", "num_mel_frames", "pad_for_frames"]
