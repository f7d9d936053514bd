"""Putting a training task's state on the training device.

The Trainer calls :func:`place_task` before training and again after loading a checkpoint
(``task.load_state_dict`` may bring CPU tensors back), so task code never moves its own state
inside ``training_step``. Before this, the toy task failed on CUDA at its first EMA update (its
EMA teacher stayed on the CPU) and the Sylber task moved its teacher on every step.

A task may define ``to(device)`` and place its state itself. Otherwise
:func:`place_task_state` moves every attribute of the task that is an ``nn.Module``, a tensor,
or an object with a ``to`` method (an :class:`~speechunits.train.ema.EMATeacher`, say).
Containers (lists, dicts, tuples) are not searched: in tasks they hold data (manifests, segment
tables, caches), which would be slow to walk and is not meant for the device. A task that keeps
device state in a container defines ``to``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def place_task_state(task: Any, device: torch.device) -> None:
    """Move the task's module, tensor and ``to``-able attributes to ``device``.

    Tensors are moved in place where the devices allow it (through ``.data``, as ``nn.Module.to``
    does with parameters), so other references to them, an optimizer's parameter list for one,
    stay valid; otherwise (to or from ``meta``) the attribute is replaced, a parameter by a
    parameter.
    """
    for name, value in list(getattr(task, "__dict__", {}).items()):
        if isinstance(value, Tensor):
            data = value.data
            moved = data.to(device)
            if moved is data:  # already there
                continue
            if torch._has_compatible_shallow_copy_type(value, moved):
                value.data = moved
            elif isinstance(value, nn.Parameter):
                setattr(task, name, nn.Parameter(moved, requires_grad=value.requires_grad))
            else:
                setattr(task, name, moved)
        elif not isinstance(value, type) and callable(getattr(value, "to", None)):
            placed = value.to(device)
            if placed is not None and placed is not value:  # a to() that returns a new object
                setattr(task, name, placed)


def place_task(task: Any, device: torch.device) -> None:
    """The task's own ``to(device)`` when it has one, else :func:`place_task_state`."""
    hook = getattr(task, "to", None)
    if callable(hook):
        hook(device)
    else:
        place_task_state(task, device)
