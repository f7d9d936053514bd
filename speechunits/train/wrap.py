"""Wrapping a model for training (DDP, torch.compile) and getting the plain module back."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechunits.train.distributed import DistInfo


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under any ``torch.compile`` / DDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, DistributedDataParallel):
            model = model.module
        else:
            return model


def wrap_model(model: nn.Module, info: DistInfo, compile: bool = False, find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap ``model`` when the job has several ranks, then optionally ``torch.compile`` it."""
    wrapped: nn.Module = model
    if info.distributed:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
    if compile:
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    return wrapped
