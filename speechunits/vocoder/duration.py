"""A duration predictor for deduplicated unit sequences (as in unit HiFi-GAN).

Ids -> embedding -> two blocks of (conv1d, ReLU, LayerNorm, dropout) -> linear: one value
per token, trained with the MSE on ``log(d + 1)`` (``d`` in unit frames) and decoded as
``round(exp(pred) - 1)``, at least 1 frame.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _ConvBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:  # [B, N, C]
        h = torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return self.drop(self.norm(h))


class DurationPredictor(nn.Module):
    """Predicts ``log(d + 1)`` per token of a deduplicated id sequence."""

    def __init__(self, vocab_size: int, channels: int = 256, kernel: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, channels)
        self.blocks = nn.ModuleList([_ConvBlock(channels, kernel, dropout) for _ in range(2)])
        self.out = nn.Linear(channels, 1)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``ids`` [B, N], ``mask`` [B, N] (True = token) -> [B, N] predicted log(d+1) (0 where masked)."""
        h = self.embed(ids) * mask.unsqueeze(-1)
        for block in self.blocks:
            h = block(h) * mask.unsqueeze(-1)
        return self.out(h).squeeze(-1) * mask

    def loss(self, ids: Tensor, durations: Tensor, mask: Tensor, per_utterance: bool = False) -> Tensor:
        """MSE between the prediction and ``log(durations + 1)``, averaged over the tokens
        (``per_utterance``: over each utterance's tokens, then over the utterances, so that the
        mean of equal DDP shards equals the whole batch's)."""
        pred = self(ids, mask)
        target = torch.log1p(durations.to(pred.dtype))
        m = mask.to(pred.dtype)
        err = (pred - target) ** 2 * m
        if per_utterance:
            return (err.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)).mean()
        return err.sum() / m.sum().clamp(min=1.0)

    @torch.no_grad()
    def predict(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Durations in unit frames: ``round(exp(pred) - 1)``, at least 1 (0 where masked)."""
        d = torch.round(torch.expm1(self(ids, mask))).long().clamp(min=1)
        return d * mask.long()
