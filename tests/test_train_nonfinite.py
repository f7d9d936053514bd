"""nonfinite=skip: a non-finite loss or gradient norm skips that optimizer's update (weights
untouched, scheduler stepped), counted in checkpoints and logs, written to nonfinite.jsonl with
the batch's ids, agreed across DDP ranks; nonfinite_patience ends a run that only skips.

Run as a script (``python tests/test_train_nonfinite.py --out-dir DIR [KEY=VALUE ...]``, also
under torchrun) it trains :class:`FaultyTask`; the DDP test launches it that way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from speechunits.errors import ConfigError
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from speechunits.train.config import TrainConfig, config_diff, config_to_dict
from speechunits.train.distributed import DistInfo
from speechunits.train.logger import read_metrics
from speechunits.train.nonfinite import read_nonfinite
from speechunits.train.toy import ToyRegressionTask, rank_batches, toy_main
from speechunits.train.toy_gan import ToyGANTask, trained_weights
from speechunits.train.wrap import unwrap_model

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "max_steps=6", "lr=0.01", "accum_steps=2", "log_every=1", "save_every=1000", "progress=false",
    "tensorboard=false", "nonfinite=skip", "task.num_samples=64",
]
FAULTS = ("nan_at", "nan_ranks", "inf_grad_steps")


class FaultyTask(ToyRegressionTask):
    """The toy regression with ids and injected faults (``task.`` options):

    - ``nan_at``: ``[step, micro_batch]`` pairs whose loss is NaN;
    - ``inf_grad_steps``: steps whose loss is finite but whose gradient is infinite;
    - ``nan_ranks``: the ranks where the faults happen (all when empty).

    Its micro-batches are ``(x, y, ids)``; ``weights[s]`` holds the model's weights after step ``s``.
    """

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        faults = {k: config.task.get(k, []) for k in FAULTS}
        super().__init__(dataclasses.replace(config, task={k: v for k, v in config.task.items() if k not in FAULTS}), dist)
        self.nan_at = {tuple(pair) for pair in faults["nan_at"]}
        self.inf_grad_steps = set(faults["inf_grad_steps"])
        self.faulty_rank = not faults["nan_ranks"] or self.dist.rank in faults["nan_ranks"]
        self.micro: dict[int, int] = {}  # step -> micro-batches seen
        self.weights: dict[int, dict[str, Tensor]] = {}

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, list[str]]]:
        o = self.opts
        g = torch.Generator().manual_seed(int(o["data_seed"]) * 1000 + epoch)
        for idx in rank_batches(torch.randperm(o["num_samples"], generator=g), o["global_batch"], self.dist):
            yield self.x[idx], self.y[idx], [f"utt{i:03d}" for i in idx.tolist()]

    def batch_ids(self, batch: tuple[Tensor, Tensor, list[str]]) -> list[str]:
        return batch[2]

    def training_step(self, batch: tuple[Tensor, Tensor, list[str]], step: int) -> tuple[Tensor, dict[str, float]]:
        micro = self.micro[step] = self.micro.get(step, -1) + 1
        loss, metrics = super().training_step(batch[:2], step)
        if self.faulty_rank and (step, micro) in self.nan_at:
            loss = loss * float("nan")
        if self.faulty_rank and step in self.inf_grad_steps:
            loss = loss + torch.sqrt(loss - loss.detach())  # adds 0; d sqrt(u)/du at 0 is inf
        return loss, metrics

    def on_step_end(self, step: int) -> None:
        super().on_step_end(step)
        self.weights[step] = _weights(self.model)


def _weights(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in unwrap_model(module).state_dict().items()}


def _equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _config(out_dir: Path, *extra: str) -> TrainConfig:
    return load_config(overrides=[*COMMON, f"out_dir={out_dir}", *extra])


def _train(out_dir: Path, *extra: str) -> Trainer:
    c = _config(out_dir, *extra)
    seed_everything(c.seed)
    trainer = Trainer(FaultyTask(c), c)
    trainer.fit()
    return trainer


def _ids(config: TrainConfig, epoch: int, batch: int, dist: DistInfo | None = None) -> list[str]:
    """Ids of the 1-based ``batch`` of ``epoch`` (as the Trainer's positions count)."""
    return list(FaultyTask(config, dist).batches(epoch))[batch - 1][2]


# ---------------------------------------------------------------- config
def test_config_keys() -> None:
    with pytest.raises(ConfigError, match="nonfinite='ignore'"):
        load_config(overrides=["nonfinite=ignore"])
    with pytest.raises(ConfigError, match="nonfinite_patience"):
        load_config(overrides=["nonfinite_patience=0"])
    # run control, not training-relevant: a run that died of a NaN resumes with nonfinite=skip
    a = config_to_dict(TrainConfig())
    assert config_diff(a, config_to_dict(TrainConfig(nonfinite="skip", nonfinite_patience=3))) == []


# ---------------------------------------------------------------- one process
def test_skipped_updates_leave_weights_and_are_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    c = _config(out, "task.nan_at=[[0,0],[3,1]]", "task.inf_grad_steps=[4]")
    seed_everything(c.seed)
    task = FaultyTask(c)
    initial = _weights(task.model)
    trainer = Trainer(task, c)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]  # a skipped first step is not a torch misuse

    assert trainer.skipped_steps == 3
    assert load_checkpoint(latest_checkpoint(out))["skipped_steps"] == 3
    # 8 batches per epoch, 2 per step: step 3 is batches 7-8 of epoch 0, step 4 batches 1-2 of epoch 1
    assert read_nonfinite(out) == [
        {"step": 0, "optimizer": "main", "reason": "loss", "position": "epoch 0, batch 1", "ids": _ids(c, 0, 1)},
        {"step": 3, "optimizer": "main", "reason": "loss", "position": "epoch 0, batch 8", "ids": _ids(c, 0, 8)},
        {"step": 4, "optimizer": "main", "reason": "grad", "position": "epoch 1, batch 1 to epoch 1, batch 2",
         "ids": _ids(c, 1, 1) + _ids(c, 1, 2)},
    ]
    # skipped steps leave the weights (AdamW's weight decay included); the others change them
    w = task.weights
    assert _equal(w[0], initial) and _equal(w[3], w[2]) and _equal(w[4], w[3])
    assert not _equal(w[1], w[0]) and not _equal(w[2], w[1]) and not _equal(w[5], w[4])
    # the schedule follows the step index; AdamW counted only its real updates
    assert trainer.scheduler.last_epoch == 6
    assert {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()} == {3}

    rows = {r["step"]: r for r in read_metrics(out) if "train/loss" in r}
    assert [rows[s]["train/skipped_steps"] for s in range(1, 7)] == [1, 1, 1, 2, 3, 3]
    assert math.isnan(rows[1]["train/loss"]) and "train/mae" not in rows[1]  # an incomplete step reports no metrics
    assert math.isfinite(rows[5]["train/loss"]) and not math.isfinite(rows[5]["train/grad_norm"])
    err = capsys.readouterr().err
    assert f"non-finite loss at step 3, optimizer 'main' (epoch 0, batch 8): update skipped (1 in a row, 2 in the run); " \
           f"ids: {', '.join(_ids(c, 0, 8))}" in err
    assert "non-finite grad at step 4" in err and "(16 in all)" in err


def test_raise_is_the_default(tmp_path: Path) -> None:
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 1 \(epoch 0, batch 4\)"):
        _train(tmp_path / "run", "nonfinite=raise", "task.nan_at=[[1,1]]")
    assert read_nonfinite(tmp_path / "run") == []


def test_patience_ends_a_run_that_only_skips(tmp_path: Path) -> None:
    every_micro = lambda steps: "task.nan_at=[" + ",".join(f"[{s},0]" for s in steps) + "]"  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"'main' skipped 3 consecutive steps .*nonfinite_patience=3.*at step 3"):
        _train(tmp_path / "a", "nonfinite_patience=3", every_micro([1, 2, 3]))
    assert [r["step"] for r in read_nonfinite(tmp_path / "a")] == [1, 2, 3]
    # an update in between starts the count again
    assert _train(tmp_path / "b", "nonfinite_patience=3", every_micro([1, 2, 4, 5])).skipped_steps == 4


def test_resume_keeps_the_count_and_one_log_line_per_skip(tmp_path: Path) -> None:
    faults = ("max_steps=8", "save_every=2", "task.nan_at=[[1,0],[4,0]]")
    ref = _train(tmp_path / "A", *faults)
    assert ref.skipped_steps == 2
    # stopped after step 5, then the step-5 checkpoint is lost: the log already has step 4's skip
    _train(tmp_path / "B", *faults, "stop_after=5")
    checkpoint_path(tmp_path / "B", 5).unlink()
    assert [r["step"] for r in read_nonfinite(tmp_path / "B")] == [1, 4]
    resumed = _train(tmp_path / "B", *faults)
    assert resumed.resumed_from == checkpoint_path(tmp_path / "B", 4)
    assert resumed.skipped_steps == 2 and load_checkpoint(latest_checkpoint(tmp_path / "B"))["skipped_steps"] == 2
    assert read_nonfinite(tmp_path / "B") == read_nonfinite(tmp_path / "A")
    assert _equal(_weights(resumed.model), _weights(ref.model))
    rows = [r for r in read_metrics(tmp_path / "B") if "train/loss" in r]
    assert [r["train/skipped_steps"] for r in rows] == [0, 1, 1, 1, 2, 2, 2, 2]

    # a checkpoint written before skipping existed counts 0
    _train(tmp_path / "C", *faults, "stop_after=4")
    path = checkpoint_path(tmp_path / "C", 4)
    state = load_checkpoint(path)
    del state["skipped_steps"], state["skip_streaks"]
    save_checkpoint(path, state)
    assert _train(tmp_path / "C", *faults).skipped_steps == 1

    # a run of skips goes on across the checkpoint: the resumed run gives up where the whole run would
    streak = ("max_steps=8", "save_every=2", "nonfinite_patience=3", "task.nan_at=[[3,0],[4,0],[5,0]]")
    _train(tmp_path / "D", *streak, "stop_after=4")
    with pytest.raises(FloatingPointError, match="skipped 3 consecutive steps .* at step 5"):
        _train(tmp_path / "D", *streak)


def test_each_optimizer_is_judged_on_its_own(tmp_path: Path) -> None:
    class GenNaN(ToyGANTask):
        """The toy GAN whose generator loss is NaN at step 1 (no batch_ids: the log's ids are [])."""

        def __init__(self, config: TrainConfig) -> None:
            super().__init__(config)
            self.weights: dict[int, dict[str, Tensor]] = {}

        def training_step(self, batch: Any, step: int, optimizer: str) -> tuple[Tensor, dict[str, float]]:
            loss, metrics = super().training_step(batch, step, optimizer)
            return (loss * float("nan") if optimizer == "gen" and step == 1 else loss), metrics

        def on_step_end(self, step: int) -> None:
            super().on_step_end(step)
            self.weights[step] = {k: v.clone() for k, v in trained_weights(self).items()}

    c = load_config(overrides=["max_steps=3", "lr=0.005", "log_every=1", "progress=false", "tensorboard=false",
                               "nonfinite=skip", "task.global_batch=16", "task.num_samples=64", f"out_dir={tmp_path / 'gan'}"])
    seed_everything(c.seed)
    trainer = Trainer(GenNaN(c), c)
    trainer.fit()
    w = trainer.task.weights
    gen = lambda s: {k: v for k, v in w[s].items() if k.startswith("model.")}  # noqa: E731
    disc = lambda s: {k: v for k, v in w[s].items() if k.startswith("disc.")}  # noqa: E731
    assert _equal(gen(1), gen(0)) and not _equal(disc(1), disc(0)) and not _equal(gen(2), gen(1))
    assert trainer.skipped_steps == 1
    assert read_nonfinite(c.out_dir) == [{"step": 1, "optimizer": "gen", "reason": "loss", "position": "epoch 0, batch 2", "ids": []}]
    assert [s.scheduler.last_epoch for s in trainer.optimizers] == [3, 3]
    row = next(r for r in read_metrics(c.out_dir) if r["step"] == 2 and "train/loss/gen" in r)
    assert math.isnan(row["train/loss/gen"]) and math.isfinite(row["train/loss/disc"]) and row["train/skipped_steps"] == 1


# ---------------------------------------------------------------- DDP
@pytest.mark.slow
def test_torchrun_ranks_skip_together(tmp_path: Path) -> None:
    """NaNs on rank 1 only, in the micro-batch whose backward DDP reduces and in one under
    ``no_sync``, and an infinite gradient from rank 1: both ranks skip these updates, nobody
    hangs, and the run ends where a single process with the same skips ends."""
    ddp = tmp_path / "ddp"
    faults = ["task.global_batch=8", "task.num_samples=48", "task.nan_at=[[2,1],[3,0]]", "task.inf_grad_steps=[4]"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
           "--out-dir", str(ddp), "--device", "cpu", "--dump-weights", str(tmp_path / "w"), *COMMON, *faults, "task.nan_ranks=[1]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun stops its workers on SIGTERM (a SIGKILL would leave them hanging)
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail("the ranks hung (stopped after 120 s): " + stderr[-3000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert stderr.count("update skipped") == 3  # rank 0 alone warns

    w0, w1 = (torch.load(tmp_path / "w" / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert _equal(w0, w1)
    assert load_checkpoint(latest_checkpoint(ddp))["skipped_steps"] == 3
    # 6 batches of 4 per rank and epoch: step 2 is batches 5-6 of epoch 0, steps 3-4 batches 1-4 of epoch 1
    c = _config(ddp, *faults)
    rank = [DistInfo(rank=r, world_size=2) for r in (0, 1)]
    assert read_nonfinite(ddp) == [
        {"step": 2, "optimizer": "main", "reason": "loss", "position": "epoch 0, batch 6", "ids": _ids(c, 0, 6, rank[1])},
        {"step": 3, "optimizer": "main", "reason": "loss", "position": "epoch 1, batch 1", "ids": _ids(c, 1, 1, rank[1])},
        {"step": 4, "optimizer": "main", "reason": "grad", "position": "epoch 1, batch 3 to epoch 1, batch 4",
         "ids": [i for d in rank for b in (3, 4) for i in _ids(c, 1, b, d)]},
    ]
    assert [r["train/skipped_steps"] for r in read_metrics(ddp) if "train/loss" in r] == [0, 0, 1, 2, 3, 3]

    single = _train(tmp_path / "single", *faults)
    assert single.skipped_steps == 3
    ws = _weights(single.model)
    for k in ws:
        assert torch.allclose(w0[k], ws[k], atol=1e-5, rtol=1e-4), f"DDP != single process on {k}"


def main(argv: Sequence[str] | None = None) -> int:
    return toy_main(FaultyTask, lambda task: _weights(task.model), "tests/test_train_nonfinite.py", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
