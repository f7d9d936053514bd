"""Tasks with several optimizers: step order, shared micro-batches, per-optimizer clipping, logs, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from speechunits.errors import ConfigError
from speechunits.train import LRFactor, Trainer, load_config
from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint
from speechunits.train.config import TrainConfig
from speechunits.train.logger import read_metrics
from speechunits.train.optim import OptimizerSpec, default_optimizer
from speechunits.train.toy_gan import ToyGANTask


def cfg(tmp_path: Path, *overrides: str) -> TrainConfig:
    base = [f"out_dir={tmp_path / 'run'}", "progress=false", "tensorboard=false", "log_every=1", "save_every=1000"]
    return load_config(overrides=[*base, *overrides])


class PairTask:
    """Two linear regressions of the same data: ``model`` by a clipped SGD named ``a`` (no
    scheduler), ``aux`` by the config's AdamW named ``b``. ``on_step_end`` records the norms
    of the gradients each optimizer applied."""

    def __init__(self, batch: int = 8, clip_a: float | None = 0.05) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.randn(4, 1, generator=g) + 3.0
        torch.manual_seed(0)
        self.model, self.aux = nn.Linear(4, 1), nn.Linear(4, 1)
        self.batch, self.clip_a = batch, clip_a
        self.applied: dict[str, list[float]] = {"a": [], "b": []}
        self.calls: list[str] = []

    def optimizers(self, config: TrainConfig) -> list[OptimizerSpec]:
        sgd = torch.optim.SGD(self.model.parameters(), lr=0.1)
        return [OptimizerSpec("a", sgd, clip_norm=self.clip_a), default_optimizer(config, self.aux, name="b", modules=("aux",))]

    def batches(self, epoch: int):
        for i in range(0, 64, self.batch):
            yield self.x[i : i + self.batch], self.y[i : i + self.batch]

    def training_step(self, batch, step: int, optimizer: str):
        self.calls.append(optimizer)
        x, y = batch
        net = self.model if optimizer == "a" else self.aux
        loss = torch.nn.functional.mse_loss(net(x), y)
        return loss, {"rows": float(len(x))}

    def on_step_end(self, step: int) -> None:
        for name, module in (("a", self.model), ("b", self.aux)):
            grads = torch.cat([p.grad.flatten() for p in module.parameters()])
            self.applied[name].append(float(grads.norm()))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_each_optimizer_logs_and_clips_on_its_own(tmp_path: Path) -> None:
    c = cfg(tmp_path, "max_steps=5", "lr=0.01", "warmup_steps=2", "schedule=linear")
    task = PairTask()
    Trainer(task, c).fit()
    rows = [r for r in read_metrics(c.out_dir) if "train/loss/a" in r]
    assert len(rows) == 5
    expected = {f"train/{k}/{n}" for k in ("loss", "lr", "grad_norm", "rows") for n in "ab"} | {"train/items_per_s", "train/epoch"}
    assert set(rows[0]) - {"step", "time"} == expected
    # a clips to its own threshold; b (config clip_norm null) does not clip
    assert all(r["train/grad_norm/a"] > 0.5 for r in rows)
    assert task.applied["a"] == pytest.approx([0.05] * 5, rel=1e-4)
    assert task.applied["b"] == pytest.approx([r["train/grad_norm/b"] for r in rows], rel=1e-5)
    assert all(g > 0.5 for g in task.applied["b"])
    # a has no scheduler; b follows the config's schedule
    assert [r["train/lr/a"] for r in rows] == [0.1] * 5
    assert [r["train/lr/b"] for r in rows] == pytest.approx([0.01 * LRFactor("linear", 2, 5)(s) for s in range(5)])
    state = load_checkpoint(latest_checkpoint(c.out_dir))
    assert state["optimizer_name"] == "a" and state["scheduler"] is None
    assert [o["name"] for o in state["extra_optimizers"]] == ["b"] and state["extra_optimizers"][0]["scheduler"]["last_epoch"] == 5
    assert set(state["extra_modules"]) == {"aux"} and torch.equal(state["extra_modules"]["aux"]["weight"], task.aux.weight)


def test_every_optimizer_sees_the_same_micro_batches(tmp_path: Path) -> None:
    """Two micro-batches of 4 == one batch of 8, for both optimizers: each optimizer ran over
    the step's micro-batches, not over micro-batches of its own."""
    runs = []
    for batch, accum in ((4, 2), (8, 1)):
        task = PairTask(batch, clip_a=None)
        Trainer(task, cfg(tmp_path / f"b{batch}", "max_steps=4", "lr=0.05", f"accum_steps={accum}")).fit()
        assert task.calls == ["a"] * accum + ["b"] * accum + task.calls[2 * accum :]  # a's micro-batches, then b's
        runs.append((task.model.state_dict(), task.aux.state_dict()))
    for one, other in zip(*runs):
        for k in one:
            assert torch.allclose(one[k], other[k], atol=1e-6), k


def test_one_declared_optimizer_keeps_the_plain_log_keys(tmp_path: Path) -> None:
    class Single(PairTask):
        def optimizers(self, config: TrainConfig) -> list[OptimizerSpec]:
            return [OptimizerSpec("sgd", torch.optim.SGD(self.model.parameters(), lr=0.1))]

        def on_step_end(self, step: int) -> None:
            pass

    task = Single()
    c = cfg(tmp_path, "max_steps=2")
    Trainer(task, c).fit()
    assert set(task.calls) == {"sgd"}
    (row, _) = [r for r in read_metrics(c.out_dir) if "train/loss" in r]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/rows"} <= set(row) and "train/lr/sgd" not in row
    assert load_checkpoint(latest_checkpoint(c.out_dir))["optimizer_name"] == "sgd"


def test_gan_steps_the_discriminator_then_the_generator(tmp_path: Path) -> None:
    order: list[str] = []

    class Recorded(ToyGANTask):
        def training_step(self, batch, step, optimizer):
            order.append(optimizer)
            return super().training_step(batch, step, optimizer)

    c = cfg(tmp_path, "max_steps=4", "lr=0.002", "warmup_steps=2", "accum_steps=2", "task.d_lr_final=0.5")
    trainer = Trainer(Recorded(c), c)
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in trainer.modules.items()}
    trainer.fit()
    assert order == ["disc", "disc", "gen", "gen"] * 4
    assert list(trainer.modules) == ["model", "disc"]
    for name, module in trainer.modules.items():
        assert not torch.equal(module.state_dict()["0.weight"], before[name]["0.weight"]), name
    rows = [r for r in read_metrics(c.out_dir) if "train/loss/disc" in r]
    assert [r["train/lr/disc"] for r in rows] == pytest.approx([0.002 * LRFactor("linear", 0, 4, 0.5)(s) for s in range(4)])
    assert [r["train/lr/gen"] for r in rows] == pytest.approx([0.002 * LRFactor("cosine", 2, 4)(s) for s in range(4)])
    assert all({"train/d_real/disc", "train/d_fake/disc", "train/grad_norm/gen"} <= set(r) for r in rows)
    assert any("valid/mode_distance" in r for r in read_metrics(c.out_dir))


def test_declarations_that_do_not_add_up_are_refused(tmp_path: Path) -> None:
    c = cfg(tmp_path, "max_steps=1")

    def refused(specs, match: str) -> None:
        class Declared(PairTask):
            def optimizers(self, config: TrainConfig) -> list[OptimizerSpec]:
                return specs(self, config)

        with pytest.raises(ConfigError, match=match):
            Trainer(Declared(), c)

    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    refused(lambda t, c: [], "at least one")
    refused(lambda t, c: [OptimizerSpec("a", sgd(t.model)), OptimizerSpec("a", sgd(t.aux), modules=("aux",))], "unique")
    refused(lambda t, c: [OptimizerSpec("a", sgd(t.model)), OptimizerSpec("b", sgd(t.model))], "in optimizers 'a' and 'b'")
    refused(lambda t, c: [OptimizerSpec("a", sgd(t.model)), OptimizerSpec("b", sgd(t.aux))], "'b' steps a parameter .* none of its modules")
    refused(lambda t, c: [OptimizerSpec("a", sgd(t.model), modules=("model", "calls"))], "task.calls .* found list")
    # dataclasses.replace keeps a spec whole (its parameter list is rebuilt)
    spec = dataclasses.replace(default_optimizer(c, nn.Linear(2, 1)), clip_norm=None)
    assert spec.max_norm == float("inf") and len(spec.params) == 2


def test_non_finite_loss_names_the_optimizer(tmp_path: Path) -> None:
    task = PairTask()
    task.y[9, 0] = float("nan")  # second micro-batch of step 1
    with pytest.raises(FloatingPointError, match=r"at step 1, optimizer 'a' \(epoch 0, batch 2\)"):
        Trainer(task, cfg(tmp_path, "max_steps=3")).fit()
