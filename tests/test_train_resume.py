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
from speechunits.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_latest_valid
from speechunits.train.logger import read_metrics
from speechunits.train.toy import ToyRegressionTask

REPO = Path(__file__).resolve().parents[1]
# dropout + input noise draw from the global RNG, accumulation and clipping are on, the
# schedule warms up and decays: everything a resume has to restore.
COMMON = [
    "max_steps=30", "lr=0.01", "warmup_steps=5", "accum_steps=2", "clip_norm=1.0", "log_every=3",
    "progress=false", "tensorboard=false", "task.dropout=0.2", "task.noise=0.1", "task.num_samples=40",
]


def _train(out_dir: Path, *extra: str) -> Trainer:
    c = load_config(overrides=[*COMMON, f"out_dir={out_dir}", *extra])
    seed_everything(c.seed)
    trainer = Trainer(ToyRegressionTask(c), c)
    trainer.fit()
    return trainer


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


def _toy_cmd(out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speechunits.train.toy", "--out-dir", str(out_dir), "--device", "cpu", *COMMON, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_and_resume_in_subprocesses(tmp_path: Path) -> None:
    """A run killed with SIGKILL after a checkpoint resumes to the uninterrupted run's weights."""
    slow = ["save_every=5", "keep_last=0", "task.step_sleep=0.03"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1
    try:
        _train(tmp_path / "A", *slow)
    finally:
        torch.set_num_threads(threads)
    proc = subprocess.Popen(_toy_cmd(tmp_path / "B", *slow), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    done = subprocess.run(_toy_cmd(tmp_path / "B", *slow), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr and "step_000000" in done.stderr
    a = load_checkpoint(tmp_path / "A" / "checkpoints" / "step_00000030.pt")
    b = load_checkpoint(tmp_path / "B" / "checkpoints" / "step_00000030.pt")
    _assert_same_state(a["model"], b["model"])
    _assert_same_state(a["task"]["teacher"]["module"], b["task"]["teacher"]["module"])
    assert a["rng"][0]["torch"].equal(b["rng"][0]["torch"])
