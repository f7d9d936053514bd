"""The judge's acoustic model: conv subsampling (x2 or x4), a BLSTM (or small Conformer)
encoder and a linear layer to the character vocabulary (CTC log-probabilities)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from speechunits.errors import ConfigError

ENCODERS = ("blstm", "conformer")


@dataclass
class JudgeModelConfig:
    """Architecture of the judge; stored in its checkpoint."""

    num_mel_bins: int = 80
    vocab_size: int = 29
    subsampling: int = 4            # 2 | 4 (stride-2 convs)
    conv_channels: int = 32
    encoder: str = "blstm"          # blstm | conformer
    hidden: int = 320               # BLSTM units per direction; conformer model width
    num_layers: int = 3
    dropout: float = 0.1
    conformer_heads: int = 4
    conformer_ff_mult: int = 4
    conformer_kernel: int = 15

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JudgeModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(None, f"unknown judge model options {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls(**dict(d))
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.subsampling not in (2, 4):
            raise ConfigError(None, f"model.subsampling must be 2 or 4, got {self.subsampling}")
        if self.encoder not in ENCODERS:
            raise ConfigError(None, f"model.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "conformer" and self.hidden % self.conformer_heads:
            raise ConfigError(None, f"model.hidden={self.hidden} is not divisible by conformer_heads={self.conformer_heads}")
        if min(self.num_layers, self.hidden, self.conv_channels, self.vocab_size - 1) < 1:
            raise ConfigError(None, "model.num_layers, hidden, conv_channels must be >= 1 and vocab_size >= 2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def conv_out_length(lengths: Tensor) -> Tensor:
    """Frames after one kernel-3, stride-2, padding-1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


class ConvSubsampling(nn.Module):
    """Stride-2 2-D convolutions over (time, mel): x2 (one) or x4 (two), then a projection and LayerNorm."""

    def __init__(self, in_dim: int, channels: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.num_convs = {2: 1, 4: 2}[factor]
        layers: list[nn.Module] = []
        freq = in_dim
        for i in range(self.num_convs):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1), nn.ReLU()]
            freq = (freq - 1) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * freq, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        y = self.conv(x.unsqueeze(1))  # [B, C, T', F']
        b, c, t, f = y.shape
        y = self.norm(self.proj(y.permute(0, 2, 1, 3).reshape(b, t, c * f)))
        for _ in range(self.num_convs):
            lengths = conv_out_length(lengths)
        return y, lengths


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``[B, T, D]`` within its length (padding stays at the end)."""
    t = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    n = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class BLSTMEncoder(nn.Module):
    """Bidirectional LSTM layers, each a forward and a backward unidirectional LSTM over the
    padded batch: the backward one reads each sequence reversed within its length, so padding
    never reaches a valid frame (exact like packing, several times faster on CPU). Output
    LayerNorm."""

    def __init__(self, in_dim: int, hidden: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.fwd = nn.ModuleList(nn.LSTM(in_dim if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(num_layers))
        self.bwd = nn.ModuleList(nn.LSTM(in_dim if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(2 * hidden)
        self.out_dim = 2 * hidden
        with torch.no_grad():  # forget-gate bias 1 (gates are ordered i, f, g, o)
            for name, param in self.named_parameters():
                if "bias_ih" in name:
                    param[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if i:
                x = self.drop(x)
            back = reverse_padded(bwd(reverse_padded(x, lengths))[0], lengths)
            x = torch.cat([fwd(x)[0], back], dim=-1)
        return self.norm(x)


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim * mult), nn.SiLU(), nn.Dropout(dropout),
                         nn.Linear(dim * mult, dim), nn.Dropout(dropout))


class _ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, (masked-safe) LayerNorm, SiLU, pointwise conv."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.pw2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        y = self.norm(x).masked_fill(pad.unsqueeze(-1), 0.0).transpose(1, 2)
        y = nn.functional.glu(self.pw1(y), dim=1)
        y = self.dw(y).transpose(1, 2)
        y = nn.functional.silu(self.norm2(y)).transpose(1, 2)
        return self.drop(self.pw2(y).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = _FeedForward(dim, ff_mult, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_drop = nn.Dropout(dropout)
        self.conv = _ConvModule(dim, kernel, dropout)
        self.ff2 = _FeedForward(dim, ff_mult, dropout)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        h = self.attn_norm(x)
        x = x + self.attn_drop(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        x = x + self.conv(x, pad)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe


class ConformerEncoder(nn.Module):
    def __init__(self, cfg: JudgeModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ConformerBlock(cfg.hidden, cfg.conformer_heads, cfg.conformer_ff_mult, cfg.conformer_kernel, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.out_dim = cfg.hidden

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        pad = torch.arange(x.size(1), device=x.device).unsqueeze(0) >= lengths.to(x.device).unsqueeze(1)
        x = self.drop(x * math.sqrt(x.size(-1)) + sinusoidal_positions(x.size(1), x.size(-1), x.device))
        for block in self.blocks:
            x = block(x, pad)
        return x


class CTCJudgeModel(nn.Module):
    """``forward(feats [B, T, mels], lengths [B]) -> (log_probs [B, T', V], out_lengths [B])``."""

    def __init__(self, cfg: JudgeModelConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        width = cfg.hidden if cfg.encoder == "conformer" else 2 * cfg.hidden
        self.subsample = ConvSubsampling(cfg.num_mel_bins, cfg.conv_channels, cfg.hidden, cfg.subsampling)
        self.encoder: nn.Module = (BLSTMEncoder(cfg.hidden, cfg.hidden, cfg.num_layers, cfg.dropout)
                                   if cfg.encoder == "blstm" else ConformerEncoder(cfg))
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, cfg.vocab_size)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, out_lengths = self.subsample(feats, lengths)
        x = self.encoder(x, out_lengths)
        return torch.log_softmax(self.head(self.drop(x)).float(), dim=-1), out_lengths


def ctc_loss(log_probs: Tensor, out_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """CTC loss, blank 0: the mean over utterances of each utterance's summed negative
    log-likelihood (impossible alignments count 0, ``zero_infinity``)."""
    per_utt = nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths,
                                     blank=0, reduction="none", zero_infinity=True)
    return per_utt.mean()


def spec_augment(feats: Tensor, lengths: Tensor, *, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: int, time_ratio: float) -> Tensor:
    """SpecAugment (no warping): per utterance ``freq_masks`` bands of up to ``freq_width`` mel
    bins and ``time_masks`` spans of up to ``min(time_width, time_ratio * length)`` frames set
    to 0 (the normalised mean). Draws from the global torch CPU RNG (checkpointed by the Trainer)."""
    b, t, d = feats.shape
    keep = torch.ones(b, t, d, dtype=torch.bool)
    for i in range(b):
        n = int(lengths[i])
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, ()))
            f0 = int(torch.randint(0, max(1, d - w + 1), ()))
            keep[i, :, f0 : f0 + w] = False
        max_w = min(time_width, int(time_ratio * n))
        for _ in range(time_masks):
            w = int(torch.randint(0, max_w + 1, ()))
            t0 = int(torch.randint(0, max(1, n - w + 1), ()))
            keep[i, t0 : t0 + w, :] = False
    return feats * keep.to(feats.device)
