"""Training configuration: the :class:`TrainConfig` dataclass, YAML loading and CLI overrides.

A config is a YAML file (optional) merged onto the dataclass defaults, then ``key=value``
overrides (omegaconf dot-list syntax, e.g. ``lr=1e-4 task.crop_seconds=5``). Unknown keys are an
error; task-specific options live under the free-form ``task`` mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from speechunits.config import load_structured
from speechunits.errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
NONFINITE = ("raise", "skip")

# Keys that do not change what is trained (logging, bookkeeping, run control). All other keys
# are training-relevant: a checkpoint written under different values refuses to resume.
# ``nonfinite`` and ``nonfinite_patience`` are run control: they change no finite update, only
# whether a non-finite one ends the run, and the usual way to use them is to resume a run that
# died of a NaN with ``nonfinite=skip``. What they did is recorded where it happened (the
# checkpoint's ``skipped_steps``, ``nonfinite.jsonl``).
NON_TRAINING_KEYS = frozenset(
    {
        "out_dir",
        "log_every",
        "save_every",
        "keep_last",
        "validate_every",
        "resume",
        "resume_force",
        "stop_after",
        "progress",
        "tensorboard",
        "compile",
        "ddp_find_unused",
        "nonfinite",
        "nonfinite_patience",
    }
)


@dataclass
class TrainConfig:
    """Everything the shared :class:`~speechunits.train.loop.Trainer` needs."""

    out_dir: str = "exp/train"
    # optimisation (AdamW; no weight decay on biases / norm weights / other 1-d parameters)
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: Optional[float] = None  # None or <= 0: no clipping (the norm is still logged)
    accum_steps: int = 1
    # learning-rate schedule, stepped once per optimizer step
    schedule: str = "cosine"  # cosine | linear | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # final LR as a fraction of ``lr`` (cosine / linear)
    max_steps: int = 1000
    # numerics
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 (CUDA only) | fp32
    compile: bool = False
    ddp_find_unused: bool = False  # DDP find_unused_parameters (tasks whose forward skips parameters)
    seed: int = 0
    nonfinite: str = "raise"  # raise | skip: a non-finite loss or gradient norm ends the run, or skips the update
    nonfinite_patience: int = 20  # skip: this many consecutive skipped steps of one optimizer end the run
    # bookkeeping
    log_every: int = 10
    save_every: int = 1000
    keep_last: int = 3  # 0 keeps every checkpoint
    validate_every: int = 0  # 0: validate only at the end (when the task can)
    resume: str = "auto"  # auto | never | PATH (a checkpoint file or a checkpoint directory)
    resume_force: bool = False
    stop_after: Optional[int] = None  # test hook: return after this many optimizer steps
    progress: bool = True
    tensorboard: bool = True
    # task-specific options (free form)
    task: Dict[str, Any] = field(default_factory=dict)


def _validate(cfg: TrainConfig, source: str | None) -> TrainConfig:
    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(source, f"{key}={getattr(cfg, key)!r}: expected {expected}")

    if cfg.schedule not in SCHEDULES:
        raise bad("schedule", " | ".join(SCHEDULES))
    if cfg.precision not in PRECISIONS:
        raise bad("precision", " | ".join(PRECISIONS))
    if cfg.nonfinite not in NONFINITE:
        raise bad("nonfinite", " | ".join(NONFINITE))
    if cfg.nonfinite_patience < 1:
        raise bad("nonfinite_patience", "an integer >= 1")
    if cfg.accum_steps < 1:
        raise bad("accum_steps", "an integer >= 1")
    if cfg.max_steps < 0:
        raise bad("max_steps", "an integer >= 0")
    if cfg.warmup_steps < 0:
        raise bad("warmup_steps", "an integer >= 0")
    if not 0 < cfg.lr < float("inf"):  # NaN fails too
        raise bad("lr", "a positive finite number")
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise bad("betas", "two numbers in [0, 1)")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise bad("min_lr_ratio", "a number in [0, 1]")
    for key in ("log_every", "save_every"):
        if getattr(cfg, key) < 1:
            raise bad(key, "an integer >= 1")
    if cfg.keep_last < 0:
        raise bad("keep_last", "an integer >= 0 (0 keeps all)")
    if cfg.validate_every < 0:
        raise bad("validate_every", "an integer >= 0")
    if cfg.stop_after is not None and cfg.stop_after < 1:
        raise bad("stop_after", "null or an integer >= 1")
    if not cfg.resume:
        raise bad("resume", "auto | never | a checkpoint path")
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Defaults <- ``base`` mapping <- YAML file ``path`` <- ``key=value`` overrides, validated.

    Raises :class:`ConfigError` naming the file (or ``<command line>``) for unknown keys, wrong
    types and invalid values.
    """
    cfg = load_structured(TrainConfig, path, overrides, base)
    return _validate(cfg, str(path) if path is not None else "<config>")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """A plain (JSON/YAML-able) dict of ``cfg``."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as YAML text (the effective config written beside a run)."""
    return OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg)))


def training_relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config dict that defines the run (everything but :data:`NON_TRAINING_KEYS`)."""
    return {k: v for k, v in config.items() if k not in NON_TRAINING_KEYS}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, (Mapping, DictConfig)):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Training-relevant keys whose values differ, as ``"key: old -> new"`` lines (sorted)."""
    a, b = _flatten(training_relevant(old)), _flatten(training_relevant(new))
    missing = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            show = lambda v: "<unset>" if v is missing else repr(v)  # noqa: E731
            lines.append(f"{key}: {show(va)} -> {show(vb)}")
    return lines
