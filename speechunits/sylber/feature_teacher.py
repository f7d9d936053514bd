"""A fixed log-mel 'teacher' for stage-1 training from scratch (no pretrained SSL model).

Sylber's stage 1 regresses onto segment-averaged features of a pretrained speech model
(SD-HuBERT / HuBERT). Where no such checkpoint exists (the synthetic recipe, tests), this
teacher supplies informative frame features instead: log-mel energies on the encoder's
own frame grid (400-sample windows, hop 320: exactly the HuBERT conv stack's frame count),
standardised per utterance over its valid frames, then mapped to the model width by a
fixed random orthogonal projection. It has no trainable parameters.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from speechunits.sylber.model import conv_output_lengths


class LogMelTeacher(nn.Module):
    """``forward(waveforms, lengths) -> (features (B, T, dim), frame_lengths)`` like SylberModel."""

    def __init__(self, dim: int, conv_layers: list[tuple[int, int, int]], *, n_mels: int = 80,
                 sample_rate: int = 16000, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.conv_layers = [tuple(layer) for layer in conv_layers]
        window = 1
        hop = 1
        for _, kernel, stride in reversed(self.conv_layers):
            window = (window - 1) * stride + kernel
        for _, _, stride in self.conv_layers:
            hop *= stride
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=window, win_length=window, hop_length=hop,
            n_mels=n_mels, center=False, power=2.0,
        )
        gen = torch.Generator().manual_seed(seed)
        tall = (max(dim, n_mels), min(dim, n_mels))
        q, _ = torch.linalg.qr(torch.randn(*tall, generator=gen))  # orthonormal columns
        proj = q if dim >= n_mels else q.T  # (dim, n_mels): an isometry, or a projection onto dim axes
        self.register_buffer("projection", proj * scale, persistent=False)

    @torch.no_grad()
    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch, total = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=waveforms.device)
        frames = conv_output_lengths(lengths, self.conv_layers).to(waveforms.device)
        logmel = torch.log(self.mel.to(waveforms.device)(waveforms.float()) + 1e-6).transpose(1, 2)  # (B, T, M)
        logmel = logmel[:, : int(frames.max())]
        valid = (torch.arange(logmel.shape[1], device=waveforms.device)[None, :] < frames[:, None]).unsqueeze(-1)
        count = valid.sum(dim=1, keepdim=True).clamp_min(1)
        mean = (logmel * valid).sum(dim=1, keepdim=True) / count
        std = (((logmel - mean) * valid).pow(2).sum(dim=1, keepdim=True) / count).sqrt().clamp_min(1e-3)
        feats = ((logmel - mean) / std * valid) @ self.projection.to(waveforms.device).T
        return feats, frames
