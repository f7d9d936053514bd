"""A decoder-only Transformer over unit tokens (the unit LM), read top to bottom.

Token ids: a packed set's tokens are ``0..V-1``; the LM adds ``BOS = V`` and ``EOS = V+1``, so
the embedding table has ``V + 2`` rows (``UnitLMConfig.vocab_size``). Every sequence starts
with BOS; the model predicts the next token among the ``V + 1`` outcomes that can follow
(ids and EOS): BOS is never a target, so :func:`next_token_logprobs` gives it no mass, and
training, scoring and sampling all go through it, which keeps the three on one distribution.

Why this shape: pre-LN blocks (stable without warm-up tricks at small scale), rotary positions
(relative, no learned position table, so a trained model scores sequences of any length), an
output projection tied to the embedding (fewer parameters on small unit vocabularies), and
attention through :func:`torch.nn.functional.scaled_dot_product_attention` with
``is_causal=True`` so PyTorch picks its fused kernels. Sequences in a batch are *right*
padded: a real position only attends to earlier positions, which are all real, so the causal
mask alone makes every real position's output independent of the padding (tested). Outputs
at padded positions are garbage and are never read. No KV cache: sampling recomputes the
prefix (fine for the short continuations the toolkit draws).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechunits.errors import ConfigError

__all__ = ["UnitLM", "UnitLMConfig", "apply_rotary", "bos_id", "eos_id", "next_token_logprobs", "rotary_tables"]


@dataclass
class UnitLMConfig:
    """Model dimensions. ``vocab_size`` counts BOS and EOS (V + 2 for a set of V token ids)."""

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    max_len: int = 512  # the training window (tokens incl. BOS); sampling keeps this much context
    rope_base: float = 10000.0
    tie_weights: bool = True

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ConfigError(None, f"vocab_size={self.vocab_size}: expected V + 2 >= 3 (token ids plus BOS and EOS)")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(None, f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if min(self.n_layers, self.d_ff, self.max_len) < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(None, f"bad model dimensions {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(None, f"unknown unit LM model options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def bos_id(cfg: UnitLMConfig) -> int:
    return cfg.vocab_size - 2


def eos_id(cfg: UnitLMConfig) -> int:
    return cfg.vocab_size - 1


def next_token_logprobs(logits: Tensor) -> Tensor:
    """Log-probabilities (float32) over the last axis of ``logits`` (..., V+2), BOS (index V) masked out."""
    logits = logits.float()
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[-2] = True
    return torch.log_softmax(logits.masked_fill(mask, float("-inf")), dim=-1)


# ---------------------------------------------------------------- rotary positions
def rotary_tables(length: int, head_dim: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of angle ``pos * base^(-2i/head_dim)``, each (length, head_dim/2), float32."""
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., i], x[..., i + d/2]) of ``x`` (..., T, d) by the position's angle.

    The dot product of a query rotated at position m and a key rotated at n depends on m - n only."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.to(x.dtype)


# ---------------------------------------------------------------- blocks
class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LN: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cos, sin))
        return x + self.drop(self.mlp(self.ln2(x)))


class UnitLM(nn.Module):
    """``forward(tokens (B, T)) -> logits (B, T, V+2)``; right padding, see the module docstring."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = None if cfg.tie_weights else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for block in self.blocks:  # residual branches scaled down with depth (GPT-2)
            for lin in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def output_weight(self) -> Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits for the next token at every position. ``lengths`` is accepted for symmetry with
        the batch layout; right padding needs no mask beyond causality (module docstring)."""
        head_dim = self.cfg.d_model // self.cfg.n_heads
        cos, sin = rotary_tables(tokens.shape[1], head_dim, self.cfg.rope_base, tokens.device)
        x = self.drop(self.embed(tokens))
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.ln_f(x), self.output_weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
