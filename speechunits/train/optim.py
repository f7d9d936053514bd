"""The optimizers of a training task: which parameters each one trains, its schedule, its clipping.

A task that declares nothing is trained by one AdamW over ``task.model`` with the schedule and
clipping of the :class:`TrainConfig` (:func:`default_optimizer`). A task that needs more (a
GAN's generator and discriminator, Capacitron's SGD on its Lagrange multiplier) returns an
ordered list of :class:`OptimizerSpec` from ``optimizers(config)``. The Trainer treats the
single case as a one-element list, so both go through the same loop code.

Each spec names the task attributes (``nn.Module`` s) that hold its parameters. Those modules
are the run's *trained modules*: the Trainer moves, DDP-wraps, compiles and checkpoints them.
:func:`trained_modules` checks the declaration, because a parameter outside every named module
would train but never be saved, and a parameter in two optimizers would be stepped twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from speechunits.errors import ConfigError
from speechunits.train.config import TrainConfig
from speechunits.train.schedule import build_scheduler
from speechunits.train.wrap import unwrap_model

DEFAULT_NAME = "main"
"""Name of the optimizer of a task that declares none (and of every format-1 checkpoint's)."""

PRIMARY_MODULE = "model"
"""The task attribute every task has; its state is a checkpoint's ``model`` entry."""


@dataclass
class OptimizerSpec:
    """One optimizer the Trainer steps, with its own scheduler and clipping.

    - ``name``: the ``optimizer=`` argument of ``training_step``, the suffix of its log keys
      (``lr/<name>``, ``grad_norm/<name>``) and its key in checkpoints.
    - ``scheduler``: stepped once after every step of this optimizer; None keeps its LR.
    - ``clip_norm``: maximum gradient norm over this optimizer's parameters; None or <= 0
      turns clipping off (the norm is still computed and logged).
    - ``modules``: names of the task attributes holding its parameters.
    """

    name: str
    optimizer: Optimizer
    scheduler: LRScheduler | None = None
    clip_norm: float | None = None
    modules: tuple[str, ...] = (PRIMARY_MODULE,)
    _params: list[Tensor] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.modules = tuple(self.modules)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def params(self) -> list[Tensor]:
        """Every parameter this optimizer steps (what its clipping and grad norm cover)."""
        return self._params

    @property
    def max_norm(self) -> float:
        """The clipping threshold for ``clip_grad_norm_`` (inf: no clipping)."""
        return self.clip_norm if self.clip_norm is not None and self.clip_norm > 0 else math.inf

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (what the logs show)."""
        return float(self.optimizer.param_groups[0]["lr"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on >= 2-d weights only (no decay on biases, norms, scalars)."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def default_optimizer(
    config: TrainConfig, module: nn.Module, *, name: str = DEFAULT_NAME, modules: tuple[str, ...] = (PRIMARY_MODULE,)
) -> OptimizerSpec:
    """AdamW over ``module`` with the config's lr, betas, eps, weight decay (:func:`param_groups`),
    schedule and ``clip_norm``: what a task without ``optimizers()`` is trained with. Tasks with
    several optimizers use it for the ones that follow the config (``dataclasses.replace`` the
    result to change the clipping)."""
    optimizer = torch.optim.AdamW(
        param_groups(unwrap_model(module), config.weight_decay),
        lr=config.lr,
        betas=(float(config.betas[0]), float(config.betas[1])),
        eps=config.eps,
    )
    scheduler = build_scheduler(optimizer, config.schedule, config.warmup_steps, config.max_steps, config.min_lr_ratio)
    return OptimizerSpec(name, optimizer, scheduler, config.clip_norm, modules)


def trained_modules(task: Any, specs: list[OptimizerSpec]) -> dict[str, nn.Module]:
    """The task's trained modules by attribute name (``model`` first, then in order of mention),
    unwrapped; :class:`ConfigError` when the declaration does not add up."""
    if not specs:
        raise ConfigError(None, "task.optimizers() returned no optimizer: expected at least one OptimizerSpec")
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(None, f"optimizer names must be unique and non-empty, found {names}")
    modules: dict[str, nn.Module] = {}
    for attr in (PRIMARY_MODULE, *(a for s in specs for a in s.modules)):
        if attr in modules:
            continue
        value = getattr(task, attr, None)
        if not isinstance(value, nn.Module):
            raise ConfigError(None, f"an optimizer names task.{attr} as one of its modules: expected an nn.Module, "
                                    f"found {type(value).__name__}")
        modules[attr] = unwrap_model(value)
    owner: dict[int, str] = {}
    for spec in specs:
        mine = {id(p) for attr in spec.modules for p in modules[attr].parameters()}
        for p in spec.params:
            if id(p) in owner:
                raise ConfigError(None, f"a parameter of shape {tuple(p.shape)} is in optimizers {owner[id(p)]!r} and "
                                        f"{spec.name!r}: each parameter must belong to one optimizer")
            owner[id(p)] = spec.name
            if id(p) not in mine:
                raise ConfigError(None, f"optimizer {spec.name!r} steps a parameter of shape {tuple(p.shape)} that is in "
                                        f"none of its modules {list(spec.modules)}: name the task attribute holding it, "
                                        "or it would train without being moved, wrapped or checkpointed")
    return modules
