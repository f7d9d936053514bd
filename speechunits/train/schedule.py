"""Learning-rate schedules: linear warmup, then cosine / linear decay or constant.

The schedule is a :class:`torch.optim.lr_scheduler.LambdaLR` stepped once per optimizer step.
Step ``s`` (0-based count of optimizer steps already taken) uses ``lr * factor(s)``:

- warmup (``s < warmup_steps``): ``(s + 1) / warmup_steps``, so the first update is not wasted
  at lr 0 and update ``warmup_steps`` runs at the peak;
- then, with ``p = (s - warmup) / (total - warmup)`` clipped to [0, 1]:
  cosine ``m + (1 - m) * (1 + cos(pi p)) / 2``, linear ``m + (1 - m) * (1 - p)``, constant 1,
  where ``m = min_lr_ratio``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from speechunits.train.config import SCHEDULES
from speechunits.errors import ConfigError


class LRFactor:
    """The multiplicative LR factor as a picklable callable (plain attributes only)."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(None, f"schedule={kind!r}: expected one of {', '.join(SCHEDULES)}")
        self.kind = kind
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        p = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        m = self.min_lr_ratio
        if self.kind == "cosine":
            return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * p))
        return m + (1.0 - m) * (1.0 - p)


def build_scheduler(
    optimizer: Optimizer, kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """A LambdaLR applying :class:`LRFactor` to every param group of ``optimizer``."""
    return LambdaLR(optimizer, LRFactor(kind, warmup_steps, total_steps, min_lr_ratio))
