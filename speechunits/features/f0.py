"""Fundamental frequency: Praat's autocorrelation pitch tracker (through praat-parselmouth).

Grid conventions:

* :func:`extract_f0` returns one value per ``hop_seconds``, frame ``i`` centred at
  ``i * hop_seconds``, ``num_samples // round(hop_seconds * sample_rate)`` frames (the mel
  frame count at that hop). Praat analyses windows of ``3 / floor_hz`` seconds, so its own
  first and last frames lie half a window inside the sound; grid frames more than half a hop
  outside Praat's frames are unvoiced (``0.0``). A sound shorter than one analysis window is
  all unvoiced.
* :func:`f0_to_frames` puts a track on another frame grid whose frame ``j`` is centred at
  ``(j + 0.5) * frame_hop_seconds`` (LogMel frames and unit frames), taking the nearest
  source frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from speechunits.errors import AudioError, ConfigError

METHOD = "praat-ac"
"""The name stored with extracted tracks."""


@dataclass(frozen=True)
class F0Config:
    """Praat's time step, pitch floor and pitch ceiling (its other settings are Praat's defaults)."""

    hop_seconds: float = 0.01
    floor_hz: float = 60.0
    ceiling_hz: float = 500.0

    def __post_init__(self) -> None:
        if not (self.hop_seconds > 0 and 0 < self.floor_hz < self.ceiling_hz):
            raise ConfigError(None, f"F0 config: need hop_seconds > 0 and 0 < floor_hz < ceiling_hz, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def num_f0_frames(num_samples: int, sample_rate: int, hop_seconds: float) -> int:
    """Frames :func:`extract_f0` returns for a wave of ``num_samples``."""
    return num_samples // max(1, round(hop_seconds * sample_rate))


def extract_f0(wave: np.ndarray, sample_rate: int, cfg: F0Config = F0Config()) -> np.ndarray:
    """Float32 F0 in Hz per hop (frame ``i`` at ``i * hop_seconds``), ``0.0`` where unvoiced."""
    import parselmouth

    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if not np.isfinite(wave).all():
        raise AudioError(None, f"extract_f0: the wave holds {int((~np.isfinite(wave)).sum())} non-finite samples")
    n = num_f0_frames(len(wave), sample_rate, cfg.hop_seconds)
    out = np.zeros(n, dtype=np.float32)
    if n == 0 or not np.any(wave):
        return out
    sound = parselmouth.Sound(wave, sampling_frequency=float(sample_rate))
    try:
        pitch = sound.to_pitch_ac(time_step=cfg.hop_seconds, pitch_floor=cfg.floor_hz, pitch_ceiling=cfg.ceiling_hz)
    except parselmouth.PraatError as err:
        if "minimum pitch" in str(err):  # shorter than one analysis window: nothing to analyse
            return out
        raise
    times = np.asarray(pitch.xs(), dtype=np.float64)
    values = np.nan_to_num(np.asarray(pitch.selected_array["frequency"], dtype=np.float64))
    if times.size == 0:
        return out
    grid = np.arange(n) * cfg.hop_seconds
    nearest = np.clip(np.rint((grid - times[0]) / pitch.dt).astype(np.int64), 0, times.size - 1)
    inside = np.abs(times[nearest] - grid) <= pitch.dt / 2 + 1e-9
    out[inside] = values[nearest[inside]]
    return out


def f0_to_frames(f0_hz: np.ndarray, src_hop_seconds: float, num_frames: int,
                 frame_hop_seconds: float) -> np.ndarray:
    """``f0_hz`` (frame ``i`` at ``i * src_hop_seconds``) on a grid of ``num_frames`` frames
    centred at ``(j + 0.5) * frame_hop_seconds``: the nearest source frame's value (the last
    one past its end; all zeros for an empty track). Length exactly ``num_frames``."""
    f0 = np.asarray(f0_hz, dtype=np.float32).reshape(-1)
    if num_frames < 0 or src_hop_seconds <= 0 or frame_hop_seconds <= 0:
        raise ValueError(f"f0_to_frames: need num_frames >= 0 and positive hops, got {num_frames}, "
                         f"{src_hop_seconds}, {frame_hop_seconds}")
    if f0.size == 0:
        return np.zeros(num_frames, dtype=np.float32)
    centres = (np.arange(num_frames) + 0.5) * frame_hop_seconds
    idx = np.clip(np.floor(centres / src_hop_seconds + 0.5).astype(np.int64), 0, f0.size - 1)
    return f0[idx]


A = TypeVar("A")


def log_f0_and_voicing(f0_hz: A) -> tuple[A, A]:
    """(log F0 where voiced and 0 where unvoiced, voicing 1.0/0.0); numpy arrays or torch tensors."""
    if isinstance(f0_hz, np.ndarray):
        f0 = f0_hz.astype(np.float32, copy=False)
        voiced = f0 > 0
        log_f0 = np.where(voiced, np.log(np.where(voiced, f0, 1.0)), 0.0).astype(np.float32)
        return log_f0, voiced.astype(np.float32)  # type: ignore[return-value]
    import torch

    if not isinstance(f0_hz, torch.Tensor):
        raise TypeError(f"log_f0_and_voicing: expected a numpy array or torch tensor, got {type(f0_hz).__name__}")
    f0 = f0_hz.float()
    voiced = f0 > 0
    log_f0 = torch.where(voiced, torch.log(torch.where(voiced, f0, torch.ones_like(f0))), torch.zeros_like(f0))
    return log_f0, voiced.float()  # type: ignore[return-value]


__all__ = ["METHOD", "F0Config", "extract_f0", "f0_to_frames", "log_f0_and_voicing", "num_f0_frames"]
