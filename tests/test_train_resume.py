"""Resume continues the same run: killed/stopped and resumed == uninterrupted, bitwise (CPU, fp32)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from speechunits.errors import CheckpointError
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_latest_valid, tensor_leaves
from speechunits.train.logger import read_metrics
from speechunits.train.toy import ToyRegressionTask
from speechunits.train.toy_gan import ToyGANTask

REPO = Path(__file__).resolve().parents[1]
# dropout + input noise draw from the global RNG, accumulation and clipping are on, the
# schedule warms up and decays: everything a resume has to restore.
COMMON = [
    "max_steps=30", "lr=0.01", "warmup_steps=5", "accum_steps=2", "clip_norm=1.0", "log_every=3",
    "progress=false", "tensorboard=false", "task.dropout=0.2", "task.noise=0.1", "task.num_samples=40",
]


# the GAN: two optimizers (one clipped, one scheduled by the config), accumulation, dropout in
# the discriminator, an EMA generator
GAN_COMMON = [
    "max_steps=30", "lr=0.005", "warmup_steps=5", "accum_steps=2", "log_every=3", "progress=false",
    "tensorboard=false", "task.dropout=0.2", "task.num_samples=96", "task.global_batch=16",
]


def _train(out_dir: Path, *extra: str, task=ToyRegressionTask, common: list[str] = COMMON) -> Trainer:
    c = load_config(overrides=[*common, f"out_dir={out_dir}", *extra])
    seed_everything(c.seed)
    trainer = Trainer(task(c), c)
    trainer.fit()
    return trainer


def _train_gan(out_dir: Path, *extra: str) -> Trainer:
    return _train(out_dir, *extra, task=ToyGANTask, common=GAN_COMMON)


def _assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stop_and_resume_is_bitwise_identical(tmp_path: Path) -> None:
    ref = _train(tmp_path / "A")
    stopped = _train(tmp_path / "B", "save_every=7", "stop_after=11")
    assert stopped.step == 11 and not (tmp_path / "B" / "provenance.json").exists()
    assert [p.name for p in list_checkpoints(tmp_path / "B")] == ["step_00000007.pt", "step_00000011.pt"]
    resumed = _train(tmp_path / "B", "save_every=7")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000011.pt"
    assert resumed.step == 30
    _assert_same_state(ref.model.state_dict(), resumed.model.state_dict())
    _assert_same_state(ref.task.teacher.module.state_dict(), resumed.task.teacher.module.state_dict())
    a_opt, b_opt = ref.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in a_opt:
        for k in a_opt[i]:
            assert torch.equal(a_opt[i][k], b_opt[i][k])
    # the log of the resumed run has every step once, with the uninterrupted run's losses
    ra = {r["step"]: r["train/loss"] for r in read_metrics(tmp_path / "A") if "train/loss" in r}
    rb = [r for r in read_metrics(tmp_path / "B") if "train/loss" in r]
    assert [r["step"] for r in rb] == sorted(ra)
    assert {r["step"]: r["train/loss"] for r in rb} == ra


def test_resumed_checkpoints_hold_the_uninterrupted_runs_metrics(tmp_path: Path) -> None:
    """A checkpoint's ``metrics`` (the last logged step's) are the same after a resume: restored
    from the checkpoint resumed, not empty until the resumed run logs; and no wall-clock rate
    (``items_per_s``) is saved, so the rest of the checkpoint is comparable too."""
    opts = ["max_steps=12", "save_every=3", "log_every=6"]  # step 9's checkpoint: step 6's metrics
    _train(tmp_path / "A", *opts)
    _train(tmp_path / "B", *opts, "stop_after=6")
    _train(tmp_path / "B", *opts)
    for step in (9, 12):
        a = load_checkpoint(tmp_path / "A" / "checkpoints" / f"step_{step:08d}.pt")["metrics"]
        b = load_checkpoint(tmp_path / "B" / "checkpoints" / f"step_{step:08d}.pt")["metrics"]
        assert a and a == b and "items_per_s" not in a, step


def test_resumed_run_writes_the_uninterrupted_runs_checkpoint_bytes(tmp_path: Path) -> None:
    """Byte for byte, not just tensor for tensor: strings a resumed run took from the loaded
    checkpoint (the optimizer state's ``step``, ``exp_avg`` keys) are other objects than a fresh
    run's, which pickle's memo used to encode differently (chaos harness, train-sylber)."""
    opts = ["max_steps=12", "save_every=3", "log_every=3", "keep_last=0"]
    _train(tmp_path / "run", *opts)
    names = ("step_00000009.pt", "step_00000012.pt")
    uninterrupted = {n: (tmp_path / "run" / "checkpoints" / n).read_bytes() for n in names}
    for n in names:  # as if killed after step 6's checkpoint: the same run directory resumes
        (tmp_path / "run" / "checkpoints" / n).unlink()
    resumed = _train(tmp_path / "run", *opts)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000006.pt"
    for n in names:
        assert (tmp_path / "run" / "checkpoints" / n).read_bytes() == uninterrupted[n], n


def test_rerun_of_a_finished_run_prunes_what_a_kill_left(tmp_path: Path) -> None:
    """Killed after the last checkpoint was renamed into place but before the older ones were
    pruned (chaos harness, train-sylber): the rerun, which trains no step, prunes them."""
    opts = ["max_steps=6", "save_every=3", "keep_last=1"]
    _train(tmp_path / "run", *opts)
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_00000006.pt"]
    (ckpts / "step_00000003.pt").write_bytes((ckpts / "step_00000006.pt").read_bytes())  # not yet pruned
    assert _train(tmp_path / "run", *opts).step == 6
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_00000006.pt"]


def test_resume_from_the_last_checkpoint_logs_the_final_validation_once(tmp_path: Path) -> None:
    """Killed after the last checkpoint, before provenance.json (chaos harness, train-lm): the
    rerun neither validates again nor logs a second valid line (validation precedes the save)."""
    opts = ["max_steps=6", "save_every=3", "validate_every=3"]
    _train(tmp_path / "run", *opts)
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "valid/mse" in r] == [3, 6]
    (tmp_path / "run" / "provenance.json").unlink()
    _train(tmp_path / "run", *opts)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == log
    assert (tmp_path / "run" / "provenance.json").is_file()


def test_resume_without_rng_restore_would_differ(tmp_path: Path) -> None:
    """Guard: the comparison above is meaningful (the run does depend on the global RNG)."""
    a = _train(tmp_path / "A", "max_steps=6")
    b = _train(tmp_path / "B", "max_steps=6", "seed=1")
    assert not torch.equal(a.model[0].weight, b.model[0].weight)


def test_truncated_latest_checkpoint_falls_back(tmp_path: Path) -> None:
    ref = _train(tmp_path / "A")
    run = tmp_path / "B"
    _train(run, "save_every=10", "stop_after=20", "keep_last=0")
    latest = latest_checkpoint(run)
    assert latest is not None and latest.name == "step_00000020.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="step_00000020.pt") as err:
        load_checkpoint(latest)
    assert "truncated" in str(err.value)
    with pytest.warns(UserWarning, match="step_00000020.pt"):
        found = load_latest_valid(run)
    assert found is not None and found[0].name == "step_00000010.pt"
    with pytest.warns(UserWarning):
        resumed = _train(run, "save_every=10", "keep_last=0")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000010.pt"
    _assert_same_state(ref.model.state_dict(), resumed.model.state_dict())
    # an empty file and a foreign file are errors that name the file too
    empty, foreign = tmp_path / "empty.pt", tmp_path / "foreign.pt"
    empty.write_bytes(b"")
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="foreign.pt.*format"):
        load_checkpoint(foreign)


def _assert_same_tensors(a: Any, b: Any) -> None:
    ta, tb = tensor_leaves(a), tensor_leaves(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_gan_stop_and_resume_is_bitwise_identical(tmp_path: Path) -> None:
    ref = _train_gan(tmp_path / "A")
    _train_gan(tmp_path / "B", "save_every=7", "stop_after=11")
    resumed = _train_gan(tmp_path / "B", "save_every=7")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000011.pt"
    for name in ("model", "disc"):
        _assert_same_state(ref.modules[name].state_dict(), resumed.modules[name].state_dict())
    _assert_same_state(ref.task.ema.module.state_dict(), resumed.task.ema.module.state_dict())
    assert [s.name for s in resumed.optimizers] == ["disc", "gen"]
    for a, b in zip(ref.optimizers, resumed.optimizers):
        _assert_same_tensors(a.optimizer.state_dict(), b.optimizer.state_dict())
        assert a.scheduler.state_dict() == b.scheduler.state_dict()
    ra = {r["step"]: r for r in read_metrics(tmp_path / "A") if "train/loss/disc" in r}
    rb = {r["step"]: r for r in read_metrics(tmp_path / "B") if "train/loss/disc" in r}
    assert sorted(rb) == sorted(ra)
    for step, row in ra.items():
        for key in ("train/loss/disc", "train/loss/gen", "train/grad_norm/disc", "train/lr/disc", "train/d_real/disc"):
            assert rb[step][key] == row[key], (step, key)


# what a format-1 checkpoint (written before tasks could declare several optimizers) holds
FORMAT1_KEYS = ("format", "step", "epoch", "batch_in_epoch", "world_size", "model", "optimizer", "scheduler", "task", "rng", "config", "metrics")


def test_format1_checkpoint_resumes(tmp_path: Path) -> None:
    ref = _train(tmp_path / "A")
    _train(tmp_path / "B", "save_every=7", "stop_after=11")
    path = tmp_path / "B" / "checkpoints" / "step_00000011.pt"
    state = load_checkpoint(path)
    torch.save({**{k: state[k] for k in FORMAT1_KEYS}, "format": "speechunits.train/1"}, path)
    assert load_checkpoint(path)["format"] == "speechunits.train/1"
    kept = tmp_path / "format1.pt"
    kept.write_bytes(path.read_bytes())  # the resumed run prunes it
    resumed = _train(tmp_path / "B", "save_every=7")
    assert resumed.resumed_from == path and [s.name for s in resumed.optimizers] == ["main"]
    _assert_same_state(ref.model.state_dict(), resumed.model.state_dict())
    _assert_same_tensors(ref.optimizer.state_dict(), resumed.optimizer.state_dict())
    assert load_checkpoint(latest_checkpoint(tmp_path / "B"))["format"] == "speechunits.train/2"
    # a task with other optimizers refuses it, naming the file and both sides
    c = load_config(overrides=[*GAN_COMMON, f"out_dir={tmp_path / 'C'}", f"resume={kept}", "resume_force=true"])
    with pytest.raises(CheckpointError, match=r"format1.pt: checkpoint holds optimizers \['main'\], the task declares \['disc', 'gen'\]"):
        Trainer(ToyGANTask(c), c).fit()


def _toy_cmd(out_dir: Path, *extra: str, module: str = "speechunits.train.toy", common: list[str] = COMMON) -> list[str]:
    return [sys.executable, "-m", module, "--out-dir", str(out_dir), "--device", "cpu", *common, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _kill_and_resume(tmp_path: Path, slow: list[str], task, module: str, common: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run A straight through in-process; run B in a subprocess, SIGKILLed after its step-10
    checkpoint, then resumed in another. Their step-30 checkpoints."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1
    try:
        _train(tmp_path / "A", *slow, task=task, common=common)
    finally:
        torch.set_num_threads(threads)
    cmd = _toy_cmd(tmp_path / "B", *slow, module=module, common=common)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "B" / "checkpoints" / "step_00000010.pt"
    deadline = time.monotonic() + 90
    try:
        while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.exists(), "the run never wrote its step-10 checkpoint"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(latest_checkpoint(tmp_path / "B")).get("step")
    assert 10 <= killed_at < 30, killed_at
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr and "step_000000" in done.stderr
    a = load_checkpoint(tmp_path / "A" / "checkpoints" / "step_00000030.pt")
    b = load_checkpoint(tmp_path / "B" / "checkpoints" / "step_00000030.pt")
    return a, b


@pytest.mark.slow
def test_sigkill_and_resume_in_subprocesses(tmp_path: Path) -> None:
    """A run killed with SIGKILL after a checkpoint resumes to the uninterrupted run's weights."""
    slow = ["save_every=5", "keep_last=0", "task.step_sleep=0.03"]
    a, b = _kill_and_resume(tmp_path, slow, ToyRegressionTask, "speechunits.train.toy", COMMON)
    _assert_same_state(a["model"], b["model"])
    _assert_same_state(a["task"]["teacher"]["module"], b["task"]["teacher"]["module"])
    assert a["rng"][0]["torch"].equal(b["rng"][0]["torch"])


@pytest.mark.slow
def test_gan_sigkill_and_resume_in_subprocesses(tmp_path: Path) -> None:
    """The same for the GAN: generator, discriminator, both optimizers and schedulers, EMA."""
    slow = ["save_every=5", "keep_last=0", "task.step_sleep=0.01"]
    a, b = _kill_and_resume(tmp_path, slow, ToyGANTask, "speechunits.train.toy_gan", GAN_COMMON)
    assert b["optimizer_name"] == "disc" and set(b["extra_modules"]) == {"disc"}
    for key in ("model", "extra_modules", "optimizer", "scheduler", "extra_optimizers", "task"):
        _assert_same_tensors(a[key], b[key])
    assert a["scheduler"] == b["scheduler"] and a["extra_optimizers"][0]["scheduler"] == b["extra_optimizers"][0]["scheduler"]
    assert a["rng"][0]["torch"].equal(b["rng"][0]["torch"])
