"""Entry point for training commands: works as a plain process and under ``torchrun``.

A CLI module calls :func:`add_train_arguments` in its ``add_arguments`` and
``run_training(factory, config_from_args(args))`` in its ``run``::

    speechunits train-x --config conf/x.yaml out_dir=exp/x lr=5e-5 --resume auto
    torchrun --nproc_per_node 2 -m speechunits train-x ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechunits.train.config import TrainConfig, load_config
from speechunits.train.distributed import DistInfo, init_distributed, shutdown_distributed
from speechunits.train.loop import Trainer, TrainTask
from speechunits.train.rng import seed_everything

TaskFactory = Callable[[TrainConfig, DistInfo], TrainTask]


@dataclass
class TrainResult:
    """What :func:`run_training` hands back to the caller (on every rank)."""

    step: int
    metrics: dict[str, float]
    task: TrainTask
    dist: DistInfo
    start_step: int = 0  # the step this invocation resumed at (== step: the run was already finished)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--resume``, ``--out-dir`` and trailing ``key=value`` overrides."""
    parser.add_argument("--config", help="YAML training config (keys of TrainConfig; task options under task:)")
    parser.add_argument("--out-dir", help="run directory (config key out_dir)")
    parser.add_argument("--resume", help="auto (latest complete checkpoint in out_dir) | never | PATH")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="force the device (default: CUDA when available)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=5e-5 task.crop_seconds=5")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The effective :class:`TrainConfig` from parsed :func:`add_train_arguments` options."""
    overrides = list(args.overrides or [])
    if getattr(args, "out_dir", None):
        overrides.append(f"out_dir={args.out_dir}")
    if getattr(args, "resume", None):
        overrides.append(f"resume={args.resume}")
    return load_config(args.config, overrides)


def run_training(task_factory: TaskFactory, config: TrainConfig, device: str | None = None) -> TrainResult:
    """Init the process group (if under torchrun), build the task, train, tear down.

    Every rank seeds the global RNGs with ``config.seed`` before calling ``task_factory`` so
    the model initialisation is identical across ranks (DDP also broadcasts rank 0's weights).
    """
    info = init_distributed(device)
    try:
        seed_everything(config.seed)
        task = task_factory(config, info)
        trainer = Trainer(task, config, dist=info)
        metrics: dict[str, Any] = trainer.fit()
        return TrainResult(step=trainer.step, metrics=metrics, task=task, dist=info, start_step=trainer.start_step)
    finally:
        shutdown_distributed()


def export_model(result: TrainResult, config: TrainConfig, file_name: str, verb: str) -> Path:
    """After :func:`run_training`: rank 0 writes ``<out_dir>/<file_name>`` with the task's
    ``export(path, step=...)``, except when this invocation found the run already finished and the
    file is there (a rerun keeps it). Returns the path."""
    out = Path(config.out_dir) / file_name
    if not result.dist.is_main:
        return out
    if result.start_step == result.step and out.is_file():
        print(f"{verb}: already at step {result.step}; keeping {out}", file=sys.stderr)
    else:
        result.task.export(out, step=result.step)  # type: ignore[attr-defined]
        print(f"{verb}: step {result.step}; model at {out}", file=sys.stderr)
    return out
