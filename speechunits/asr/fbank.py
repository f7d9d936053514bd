"""The judge's input features: 80-dim Kaldi-style log mel filterbanks (25 ms window, 10 ms
hop, no dither) with per-utterance mean/variance normalisation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.audio import resample
from speechunits.errors import ConfigError


@dataclass
class FbankConfig:
    """Feature settings, stored in the judge checkpoint."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FbankConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(None, f"unknown fbank options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def min_samples(self) -> int:
        """Shortest waveform that gives one frame."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))


def log_fbank(wave: np.ndarray | Tensor, sample_rate: int, cfg: FbankConfig) -> Tensor:
    """``[frames, num_mel_bins]`` float32 normalised log fbank of a mono waveform.

    Other sample rates are resampled to ``cfg.sample_rate``. A waveform shorter than one
    window gives one frame of zeros after zero-padding it to a window."""
    import torchaudio.compliance.kaldi as kaldi

    wav = wave.detach().cpu().numpy() if isinstance(wave, Tensor) else np.asarray(wave)
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if sample_rate != cfg.sample_rate:
        wav = resample(wav, sample_rate, cfg.sample_rate)
    if wav.size < cfg.min_samples():
        wav = np.pad(wav, (0, cfg.min_samples() - wav.size))
    feats = kaldi.fbank(
        torch.from_numpy(np.ascontiguousarray(wav)).unsqueeze(0) * 32768.0,  # Kaldi's int16 scale
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        sample_frequency=float(cfg.sample_rate),
        dither=0.0,
        energy_floor=0.0,
    )
    return normalize_utterance(feats)


def normalize_utterance(feats: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-dimension zero mean, unit variance over the utterance's frames."""
    mean = feats.mean(dim=0, keepdim=True)
    std = feats.std(dim=0, unbiased=False, keepdim=True)
    return ((feats - mean) / (std + eps)).float()


def pad_features(feats: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[B, T_max, D]`` zero-padded batch (zero is the normalised mean) and ``[B]`` lengths."""
    lengths = torch.tensor([f.size(0) for f in feats], dtype=torch.long)
    out = feats[0].new_zeros((len(feats), int(lengths.max()), feats[0].size(1)))
    for i, f in enumerate(feats):
        out[i, : f.size(0)] = f
    return out, lengths
