"""HuBERT's span masking: random span starts, each masking ``span`` frames (spans may overlap).

As in HuBERT (and wav2vec 2.0), ``mask_prob * T / span`` starts, rounded up or down at random
(in proportion to the fraction), are drawn without replacement per utterance of ``T`` valid
frames (at least ``min_spans``), and each masks the
``span`` frames from its start. With the paper's ``mask_prob=0.8, span=10`` (8 % of frames
start a span) about half of the frames end up masked, because spans overlap. Padded frames
are never masked.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_mask(
    frame_lengths: Tensor,
    num_frames: int,
    *,
    mask_prob: float = 0.8,
    span: int = 10,
    min_spans: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, num_frames) bool mask of the frames to replace by the mask embedding."""
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    mask = torch.zeros(len(frame_lengths), num_frames, dtype=torch.bool)
    for b, length in enumerate(frame_lengths.tolist()):
        length = int(length)
        if length < 1:
            continue
        width = min(span, length)
        choices = length - width + 1
        wanted = int(mask_prob * length / width + float(torch.rand(1, generator=generator)))
        count = min(choices, max(min_spans, wanted))
        starts = torch.randperm(choices, generator=generator)[:count]
        frames = (starts[:, None] + torch.arange(width)[None, :]).reshape(-1)
        mask[b, frames] = True
    return mask
