"""A fixed log-mel 'teacher' for stage-1 training from scratch (no pretrained SSL model).

Sylber's stage 1 regresses onto segment-averaged features of a pretrained speech model
(SD-HuBERT / HuBERT). Where no such checkpoint exists (the synthetic recipe, tests), this
teacher supplies informative frame features instead: log-mel energies on the encoder's
own frame grid (400-sample windows, hop 320: exactly the HuBERT conv stack's frame count),
standardised per utterance, optionally extended with their time derivative (deltas), then
mapped to the model width by a fixed random orthogonal projection. It has no trainable
parameters.

What matters for the greedy segmentation is that the *segment means* of neighbouring
syllables point in different directions (cosine below the merge threshold). Standardising
over all frames leaves the speech/silence contrast as the dominant direction, so every
syllable mean shares it: on the synthetic dev set the median cosine of adjacent bootstrap
segments is 0.60 (0.89 at the 90th percentile) and greedy segmentation of the ideal targets
(merge threshold 0.8) recovers only F1 71 of the bootstrap's 82. Standardising over the
*speech* frames (``speech_mask``, the frames inside the training segments) and adding deltas
brings the median to -0.15 (0.36 at the 90th percentile) and the ideal targets back to F1 82.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from speechunits.encoders.model import conv_output_lengths
from speechunits.features.frame_features import frame_grid

MIN_STAT_FRAMES = 4
"""Fewer speech frames than this in an utterance: its statistics come from all valid frames."""


def masked_standardise(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` (B, T, M) minus the mean, over the frames ``mask`` (B, T) marks, divided by their std."""
    m = mask.unsqueeze(-1).to(x.dtype)
    count = m.sum(dim=1, keepdim=True).clamp_min(1)
    mean = (x * m).sum(dim=1, keepdim=True) / count
    std = (((x - mean) * m).pow(2).sum(dim=1, keepdim=True) / count).sqrt().clamp_min(1e-3)
    return (x - mean) / std


def time_derivative(x: Tensor, valid: Tensor) -> Tensor:
    """Central differences along time (one-sided at the ends of each valid span) of (B, T, M)."""
    x = x * valid.unsqueeze(-1)
    prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    nxt = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
    first = valid & ~torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], dim=1)
    last = valid & ~torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    prev = torch.where(first.unsqueeze(-1), x, prev)
    nxt = torch.where(last.unsqueeze(-1), x, nxt)
    steps = 2.0 - first.to(x.dtype) - last.to(x.dtype)
    return (nxt - prev) / steps.clamp_min(1.0).unsqueeze(-1)


class LogMelTeacher(nn.Module):
    """``forward(waveforms, lengths, speech_mask=None) -> (features (B, T, dim), frame_lengths)``.

    Same frame grid as :class:`SpeechEncoder`. With ``speech_mask`` (B, T), each utterance is
    standardised over its speech frames; without it, over all its valid frames.
    """

    def __init__(self, dim: int, conv_layers: list[tuple[int, int, int]], *, n_mels: int = 80,
                 sample_rate: int = 16000, scale: float = 1.0, deltas: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.conv_layers = [tuple(layer) for layer in conv_layers]
        window, hop = frame_grid(self.conv_layers)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=window, win_length=window, hop_length=hop,
            n_mels=n_mels, center=False, power=2.0,
        )
        self.deltas = bool(deltas)
        width = n_mels * (2 if self.deltas else 1)
        gen = torch.Generator().manual_seed(seed)
        tall = (max(dim, width), min(dim, width))
        q, _ = torch.linalg.qr(torch.randn(*tall, generator=gen))  # orthonormal columns
        proj = q if dim >= width else q.T  # (dim, width): an isometry, or a projection onto dim axes
        self.register_buffer("projection", proj * scale, persistent=False)

    @torch.no_grad()
    def forward(self, waveforms: Tensor, lengths: Tensor | None = None,
                speech_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch, total = waveforms.shape
        device = waveforms.device
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=device)
        frames = conv_output_lengths(lengths, self.conv_layers).to(device)
        logmel = torch.log(self.mel(waveforms.float()) + 1e-6).transpose(1, 2)  # (B, T, M)
        logmel = logmel[:, : int(frames.max())]
        valid = torch.arange(logmel.shape[1], device=device)[None, :] < frames[:, None]
        stat_mask = valid
        if speech_mask is not None:
            speech = valid & speech_mask[:, : logmel.shape[1]].to(device)
            enough = speech.sum(dim=1, keepdim=True) >= MIN_STAT_FRAMES
            stat_mask = torch.where(enough, speech, valid)
        feats = masked_standardise(logmel, stat_mask) * valid.unsqueeze(-1)
        if self.deltas:
            feats = torch.cat([feats, 2.0 * time_derivative(feats, valid)], dim=-1)
        feats = (feats * valid.unsqueeze(-1)) @ self.projection.T
        return feats, frames
