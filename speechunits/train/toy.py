"""A tiny regression TrainTask for tests and smoke runs of the training loop.

``python -m speechunits.train.toy out_dir=DIR max_steps=20 task.dropout=0.1`` trains an MLP on
synthetic linear-regression data; it works under ``torchrun`` too (each rank takes its slice
of every global batch). Task options (under ``task.``): ``in_dim`` (8), ``hidden`` (16),
``num_samples`` (64), ``global_batch`` (8), ``dropout`` (0.0), ``noise`` (0.0: std of input
noise drawn from the global RNG, to exercise RNG restore), ``step_sleep`` (0.0 seconds),
``data_seed`` (1234). :func:`toy_options`, :func:`rank_batches` and :func:`toy_main` are shared
with the toy GAN task (:mod:`speechunits.train.toy_gan`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from speechunits.errors import ConfigError
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.ema import EMATeacher
from speechunits.train.launch import TaskFactory, add_train_arguments, config_from_args, run_training
from speechunits.train.wrap import unwrap_model

DEFAULTS: dict[str, Any] = {
    "in_dim": 8,
    "hidden": 16,
    "num_samples": 64,
    "global_batch": 8,
    "dropout": 0.0,
    "noise": 0.0,
    "step_sleep": 0.0,
    "data_seed": 1234,
    "ema_decay": 0.9,
}


def toy_options(config: TrainConfig, defaults: dict[str, Any], dist: DistInfo, what: str) -> dict[str, Any]:
    """``config.task`` over ``defaults``; unknown keys, and a global batch the ranks cannot
    split evenly, are errors."""
    unknown = set(config.task) - set(defaults)
    if unknown:
        raise ConfigError(None, f"unknown {what} options {sorted(unknown)}; known: {sorted(defaults)}")
    opts = {**defaults, **config.task}
    if opts["global_batch"] % dist.world_size:
        raise ConfigError(None, f"task.global_batch={opts['global_batch']} is not divisible by world_size={dist.world_size}")
    return opts


def rank_batches(order: Tensor, global_batch: int, dist: DistInfo) -> Iterator[Tensor]:
    """This rank's share of each full global batch of the sample order ``order``: the ranks
    of a DDP run together take exactly the batches of a single process."""
    per = global_batch // dist.world_size
    for start in range(0, order.numel() - global_batch + 1, global_batch):
        yield order[start + dist.rank * per : start + (dist.rank + 1) * per]


class ToyRegressionTask:
    """MLP regression of ``y = x W + b`` with an EMA teacher as extra task state."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.dist = dist or DistInfo()
        self.opts = toy_options(config, DEFAULTS, self.dist, "toy task")
        o = self.opts
        g = torch.Generator().manual_seed(int(o["data_seed"]))
        self.x = torch.randn(o["num_samples"], o["in_dim"], generator=g)
        w = torch.randn(o["in_dim"], 1, generator=g)
        self.y = self.x @ w + 0.5
        self.model = nn.Sequential(
            nn.Linear(o["in_dim"], o["hidden"]), nn.LayerNorm(o["hidden"]), nn.Tanh(), nn.Dropout(o["dropout"]), nn.Linear(o["hidden"], 1)
        )
        self.teacher = EMATeacher(self.model, decay=o["ema_decay"])
        self.steps_seen = 0

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        o = self.opts
        g = torch.Generator().manual_seed(int(o["data_seed"]) * 1000 + epoch)
        for idx in rank_batches(torch.randperm(o["num_samples"], generator=g), o["global_batch"], self.dist):
            yield self.x[idx], self.y[idx]

    def training_step(self, batch: tuple[Tensor, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        if self.opts["noise"]:
            x = x + self.opts["noise"] * torch.randn_like(x)
        if self.opts["step_sleep"]:
            time.sleep(self.opts["step_sleep"])
        pred = self.model(x)
        loss = torch.nn.functional.mse_loss(pred, y)
        return loss, {"mae": float((pred.detach() - y).abs().mean())}

    def on_step_end(self, step: int) -> None:
        self.teacher.update(self.model)
        self.steps_seen += 1

    def validate(self, step: int) -> dict[str, float]:
        model = unwrap_model(self.model)
        return {"mse": float(torch.nn.functional.mse_loss(model(self.x), self.y))}

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.steps_seen = int(state["steps_seen"])


def toy_main(
    task_factory: TaskFactory, weights: Callable[[Any], dict[str, Tensor]], prog: str, doc: str, argv: Sequence[str] | None
) -> int:
    """The command line of a toy task: train (plain or under torchrun), then optionally dump
    each rank's ``weights(task)`` for the DDP tests."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_train_arguments(parser)
    parser.add_argument("--dump-weights", help="each rank writes its final weights to DIR/weights_rank<R>.pt")
    args = parser.parse_args(argv)
    result = run_training(task_factory, config_from_args(args), device=args.device)
    if args.dump_weights:
        out = Path(args.dump_weights)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(weights(result.task), out / f"weights_rank{result.dist.rank}.pt")
    print(f"finished at step {result.step}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return toy_main(ToyRegressionTask, lambda task: unwrap_model(task.model).state_dict(), "python -m speechunits.train.toy", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
