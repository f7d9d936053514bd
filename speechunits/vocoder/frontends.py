"""Conditioning front ends: :class:`VocoderInputs` -> ``[B, cond_dim, F]`` generator frames.

* ``mel``: a convolution (kernel ``frontend_kernel``, 7 by default) over the log-mel frames.
* ``frame_units`` and ``syllables`` with ``syllable_source=cluster``: an embedding table over
  the unit ids (gaps hold the silence id, so silence has its own learned vector), repeated
  ``unit_hop // mel.hop_length`` times per unit frame, then a convolution.
* ``syllables`` with ``syllable_source=embedding``: each token's stored segment embedding
  projected by a linear layer, a learned silence vector where ``unit_silence`` is True,
  spread over the token's frames (the inputs hold one vector per unit frame), repeated and
  convolved like the ids.

Optional conditioning is added to the front end's output: F0 (the normalised log-F0 and the
voicing flag of each generator frame, projected by a linear layer) and a speaker embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechunits.errors import ConfigError
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.inputs import VocoderInputs


def fit_length(x: Tensor, frames: int, value: float = 0.0) -> Tensor:
    """Cut or pad the last axis of ``x`` to ``frames``."""
    if x.shape[-1] >= frames:
        return x[..., :frames]
    pad = x.new_full((*x.shape[:-1], frames - x.shape[-1]), value)
    return torch.cat([x, pad], dim=-1)


class MelFrontend(nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        k = cfg.frontend_kernel
        self.conv = nn.Conv1d(cfg.mel.n_mels, cfg.cond_dim, k, padding=k // 2)

    def forward(self, x: VocoderInputs) -> Tensor:
        if x.mel is None:
            raise ConfigError(None, "mel vocoder: the inputs hold no mel frames")
        return self.conv(x.mel)


class UnitFrontend(nn.Module):
    """Unit-rate vectors (id embeddings or projected segment embeddings) -> generator frames."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.upsample = cfg.upsample
        self.from_ids = cfg.uses_ids
        if self.from_ids:
            self.embed = nn.Embedding(int(cfg.vocab_size), cfg.cond_dim)
        else:
            self.proj = nn.Linear(int(cfg.embedding_dim), cfg.cond_dim)
            self.silence = nn.Parameter(torch.zeros(cfg.cond_dim))
            nn.init.normal_(self.silence, std=0.02)
        k = cfg.frontend_kernel
        self.conv = nn.Conv1d(cfg.cond_dim, cfg.cond_dim, k, padding=k // 2)

    def unit_vectors(self, x: VocoderInputs) -> Tensor:
        """``[B, U, cond_dim]`` before upsampling."""
        if self.from_ids:
            if x.unit_ids is None:
                raise ConfigError(None, "unit vocoder: the inputs hold no unit_ids")
            return self.embed(x.unit_ids)
        if x.unit_vectors is None or x.unit_silence is None:
            raise ConfigError(None, "syllable-embedding vocoder: the inputs need unit_vectors and unit_silence")
        v = self.proj(x.unit_vectors.to(self.proj.weight.dtype))
        return torch.where(x.unit_silence.unsqueeze(-1), self.silence.to(v.dtype).expand_as(v), v)

    def forward(self, x: VocoderInputs) -> Tensor:
        v = self.unit_vectors(x).transpose(1, 2)  # [B, C, U]
        v = torch.repeat_interleave(v, self.upsample, dim=2)
        return self.conv(v)


class Frontend(nn.Module):
    """The input front end plus the optional F0 and speaker conditioning."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.input = MelFrontend(cfg) if cfg.input == "mel" else UnitFrontend(cfg)
        self.f0 = nn.Linear(2, cfg.cond_dim) if cfg.use_f0 else None
        self.speaker = nn.Embedding(cfg.num_speakers, cfg.cond_dim) if cfg.num_speakers else None

    def forward(self, x: VocoderInputs) -> Tensor:
        h = self.input(x)
        frames = h.shape[-1]
        if self.f0 is not None:
            if x.log_f0 is None or x.voiced is None:
                raise ConfigError(None, "the vocoder is F0-conditioned (use_f0): the inputs need log_f0 and voiced")
            f0 = torch.stack([fit_length(x.log_f0, frames), fit_length(x.voiced, frames)], dim=-1).to(h.dtype)
            h = h + self.f0(f0).transpose(1, 2)
        if self.speaker is not None:
            if x.speaker is None:
                raise ConfigError(None, "the vocoder is speaker-conditioned (num_speakers > 0): the inputs need speaker")
            h = h + self.speaker(x.speaker).unsqueeze(-1)
        return h


def build_frontend(cfg: VocoderConfig) -> Frontend:
    return Frontend(cfg)
