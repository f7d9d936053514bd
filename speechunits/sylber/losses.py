"""Sylber's self-supervised regression target and loss."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def segment_average_targets(
    teacher: torch.Tensor, segments: Sequence[np.ndarray], target_norm: float | None = None
) -> torch.Tensor:
    """Teacher frames replaced by their segment mean; zeros outside segments.

    ``teacher`` is (B, T, D); ``segments[b]`` an (N, 2) array of [start, end) frames. With
    ``target_norm``, every segment mean is rescaled to that L2 norm (its direction, which is
    all the greedy merge compares, is kept): every syllable then stands equally far from the
    zero vector of non-speech, whatever its loudness relative to the statistics.
    """
    target = torch.zeros_like(teacher)
    for b, seg in enumerate(segments):
        for start, end in np.asarray(seg, dtype=np.int64).reshape(-1, 2):
            start, end = int(start), min(int(end), teacher.shape[1])
            if end > start:
                mean = teacher[b, start:end].mean(dim=0)
                if target_norm is not None:
                    mean = mean * (target_norm / mean.norm().clamp_min(1e-6))
                target[b, start:end] = mean
    return target


def distillation_loss(student: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error summed over features, averaged over valid frames.

    ``frame_mask`` (B, T) marks real (non-padding) frames; padding never contributes.
    """
    per_frame = (student.float() - target.float()).pow(2).sum(dim=-1)
    if frame_mask is None:
        return per_frame.mean()
    mask = frame_mask.to(per_frame.dtype)
    return (per_frame * mask).sum() / mask.sum().clamp_min(1.0)
