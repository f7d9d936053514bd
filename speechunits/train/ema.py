"""Exponential-moving-average teacher (Sylber stage 2; any self-distillation task).

``teacher = decay * teacher + (1 - decay) * student`` after each optimizer step. A decay of
1.0 freezes the teacher at its initial copy of the student.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from speechunits.errors import ConfigError
from speechunits.train.wrap import unwrap_model


class EMATeacher:
    """A frozen deep copy of a student, updated as an EMA of the student's parameters.

    Buffers (e.g. norm statistics) are copied from the student on every update. The teacher
    is in eval mode and never requires grad; call it like the module it wraps.
    """

    def __init__(self, student: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(None, f"EMA decay={decay!r}: expected a number in [0, 1]")
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap_model(student))
        self.module.eval()
        self.module.requires_grad_(False)
        self.num_updates = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """Move the teacher towards ``student`` (a DDP/compiled wrapper is unwrapped)."""
        self.num_updates += 1
        if self.decay == 1.0:
            return
        src = unwrap_model(student)
        t_params = dict(self.module.named_parameters())
        for name, p in src.named_parameters():
            t = t_params[name]
            if t.device != p.device:
                raise ConfigError(None, f"EMA teacher parameter {name!r} is on {t.device}, the student's on {p.device}: "
                                        "the Trainer places task state on its device; elsewhere call teacher.to(device)")
            t.lerp_(p.detach().to(t.dtype), 1.0 - self.decay)
        t_bufs = dict(self.module.named_buffers())
        for name, b in src.named_buffers():
            t_bufs[name].copy_(b)

    def to(self, *args: Any, **kwargs: Any) -> EMATeacher:
        """Move the teacher (what the Trainer's device placement calls); returns ``self``."""
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])
