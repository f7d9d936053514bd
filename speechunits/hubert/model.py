"""The pretraining wrapper: a :class:`SpeechEncoder` plus HuBERT's masked-prediction heads.

The heads are HuBERT's: a learnt mask embedding that replaces the masked frames after the
feature projection, a final projection of the last layer to ``proj_dim``, and one embedding
per target cluster. The logit of cluster ``k`` at a frame is the cosine similarity of the
projected frame and embedding ``k``, divided by a temperature (0.1 in the paper). Only the
encoder is exported; the heads exist for training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechunits.encoders.model import SpeechEncoder


class HubertPretrainModel(nn.Module):
    """``forward(waveforms, lengths, frame_mask) -> (logits (B, T, K), frame_lengths)``."""

    def __init__(self, encoder: SpeechEncoder, num_classes: int, *, proj_dim: int = 256,
                 logit_temperature: float = 0.1) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.encoder = encoder
        dim = encoder.embed_dim
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
        self.final_proj = nn.Linear(dim, proj_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_classes, proj_dim).normal_(0.0, proj_dim ** -0.5))
        self.logit_temperature = float(logit_temperature)

    @property
    def num_classes(self) -> int:
        return int(self.label_embeddings.shape[0])

    def forward(self, waveforms: Tensor, lengths: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden, frame_lengths = self.encoder.forward_masked(waveforms, lengths, frame_mask, self.mask_embedding)
        projected = nn.functional.normalize(self.final_proj(hidden).float(), dim=-1)
        labels = nn.functional.normalize(self.label_embeddings.float(), dim=-1)
        return projected @ labels.T / self.logit_temperature, frame_lengths
