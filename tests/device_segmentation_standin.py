"""A CPU stand-in for :mod:`speechunits.sylber.segment_device` (the Triton kernels), for the plumbing tests.

It has the module's interface (``device_segmentation_available``, ``greedy_segment_device``,
``segment_means_device``) and computes with the numba host functions on ``.cpu()`` copies, so a
test can force ``segment_on="device"`` on the CPU and compare against the host path.
:func:`install` puts it in ``sys.modules`` under the real module's name (monkeypatched).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from speechunits.sylber.segment import greedy_segment_batch, segment_means
from speechunits.sylber.segment_batch import DEVICE_MODULE


def greedy_segment_device(feats: torch.Tensor, frame_lengths: torch.Tensor, norm_threshold: float,
                          merge_threshold: float, *, reset_count: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = feats.shape
    segs = greedy_segment_batch(feats.float().cpu().numpy(), frame_lengths.cpu().numpy(), norm_threshold,
                                merge_threshold, reset_count=reset_count)
    out = torch.full((b, t, 2), -1, dtype=torch.int32)  # rows past counts[b] are garbage, as the kernel leaves them
    counts = torch.zeros(b, dtype=torch.int32)
    for row, s in enumerate(segs):
        out[row, : len(s)] = torch.from_numpy(s.astype(np.int32))
        counts[row] = len(s)
    return out.to(feats.device), counts.to(feats.device)


def segment_means_device(feats: torch.Tensor, segments: torch.Tensor, counts: torch.Tensor, *,
                         dtype: torch.dtype = torch.float16) -> torch.Tensor:
    rows = [segment_means(feats[b].float().cpu().numpy(), segments[b, :n].cpu().numpy().astype(np.int64))
            for b, n in enumerate(counts.tolist()) if n]
    means = np.concatenate(rows) if rows else np.zeros((0, feats.shape[2]), np.float32)
    return torch.from_numpy(means).to(device=feats.device, dtype=dtype)


def install(monkeypatch: pytest.MonkeyPatch, *, available: bool = True) -> types.ModuleType:
    """Make ``speechunits.sylber.segment_device`` this stand-in for the test; returns the module (calls counted)."""
    module = types.ModuleType(DEVICE_MODULE)
    module.calls = {"greedy": 0, "means": 0}  # type: ignore[attr-defined]

    def greedy(*args, **kwargs):  # type: ignore[no-untyped-def]
        module.calls["greedy"] += 1  # type: ignore[attr-defined]
        return greedy_segment_device(*args, **kwargs)

    def means(*args, **kwargs):  # type: ignore[no-untyped-def]
        module.calls["means"] += 1  # type: ignore[attr-defined]
        return segment_means_device(*args, **kwargs)

    module.device_segmentation_available = lambda device: available  # type: ignore[attr-defined]
    module.greedy_segment_device = greedy  # type: ignore[attr-defined]
    module.segment_means_device = means  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, DEVICE_MODULE, module)
    return module
