"""SIGTERM / SIGUSR1 during Trainer.fit: checkpoint at the next step boundary, exit 128 + signum,
and the checkpoint resumes to the uninterrupted run's weights, bitwise (CPU, fp32)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import list_checkpoints, load_checkpoint
from speechunits.train.stop_signals import StopSignals
from speechunits.train.toy import ToyRegressionTask

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "max_steps=40", "lr=0.01", "warmup_steps=4", "accum_steps=2", "clip_norm=1.0", "log_every=2", "save_every=1000",
    "keep_last=0", "progress=false", "tensorboard=false", "task.dropout=0.2", "task.noise=0.1", "task.num_samples=40",
]
SLOW = ["task.step_sleep=0.05"]  # about 2 s of training: time to signal a subprocess mid-run
DDP = ["max_steps=40", "lr=0.01", "warmup_steps=4", "accum_steps=2", "log_every=2", "save_every=1000", "keep_last=0",
       "progress=false", "tensorboard=false", "task.global_batch=8", "task.num_samples=48", "task.step_sleep=0.05"]
SIGNALS = [signal.SIGTERM, signal.SIGUSR1]


class SignalledTask(ToyRegressionTask):
    """The toy task, sending ``signum`` to its own process during step ``at`` (0-based)."""

    def __init__(self, config: Any, signum: int, at: int) -> None:
        super().__init__(config)
        self.signum, self.at = signum, at

    def training_step(self, batch: Any, step: int) -> Any:
        if step == self.at and not getattr(self, "_sent", False):
            self._sent = True
            os.kill(os.getpid(), self.signum)
        return super().training_step(batch, step)


def _config(out_dir: Path, *extra: str) -> Any:
    return load_config(overrides=[*COMMON, f"out_dir={out_dir}", *extra])


def _fit(out_dir: Path, *extra: str, task: Any = None) -> Trainer:
    c = _config(out_dir, *extra)
    seed_everything(c.seed)
    trainer = Trainer(task(c) if task else ToyRegressionTask(c), c)
    trainer.fit()
    return trainer


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The uninterrupted run's final weights (one thread, as the subprocesses run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {k: v.clone() for k, v in _fit(tmp_path_factory.mktemp("ref")).model.state_dict().items()}
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- in process
def test_stop_signals_record_and_restore_the_previous_handlers() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    term = signal.getsignal(signal.SIGTERM)
    try:
        before = signal.getsignal(signal.SIGUSR1)
        with StopSignals(distributed=False) as stops:
            assert stops.agreed() == 0
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one does not replace the first
            assert stops.received == signal.SIGUSR1 and stops.agreed() == signal.SIGUSR1
        assert seen == [] and signal.getsignal(signal.SIGUSR1) is before
        assert signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_stop_signals_install_nothing_outside_the_main_thread() -> None:
    before = {s: signal.getsignal(s) for s in SIGNALS}
    during: dict[int, Any] = {}

    def body() -> None:
        with StopSignals(distributed=False):  # signal.signal would raise ValueError here
            during.update({s: signal.getsignal(s) for s in SIGNALS})

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert during == before


def test_fit_in_a_thread_trains_without_handlers(tmp_path: Path) -> None:
    result: list[Trainer] = []
    t = threading.Thread(target=lambda: result.append(_fit(tmp_path, "max_steps=4")))
    t.start()
    t.join()
    assert result and result[0].step == 4


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_in_process_checkpoints_exits_and_resumes(
    tmp_path: Path, signum: int, reference: dict[str, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    previous = signal.getsignal(signum)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as stop:
            _fit(tmp_path, task=lambda c: SignalledTask(c, signum, at=6))
        assert stop.value.code == 128 + signum
        assert signal.getsignal(signum) is previous
        path = tmp_path / "checkpoints" / "step_00000007.pt"  # the step in progress, finished
        assert list_checkpoints(tmp_path) == [path]
        assert not (tmp_path / "provenance.json").exists()
        err = capsys.readouterr().err
        name = signal.Signals(signum).name
        assert f"received {name} at step 7: checkpoint {path}; rerun with resume=auto (or a requeued job) continues from it" in err
        resumed = _fit(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert resumed.resumed_from == path and resumed.step == 40
    _same(reference, resumed.model.state_dict())


def test_signal_at_a_checkpointed_step_saves_once_and_in_the_last_step_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:  # step 6 is saved by save_every: no second save
        _fit(tmp_path / "a", "save_every=3", "max_steps=12", task=lambda c: SignalledTask(c, signal.SIGTERM, at=5))
    assert stop.value.code == 143
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == ["step_00000003.pt", "step_00000006.pt"]
    # during the last step the run finishes: final checkpoint, provenance, no exit
    done = _fit(tmp_path / "b", "max_steps=5", task=lambda c: SignalledTask(c, signal.SIGTERM, at=4))
    assert done.step == 5 and (tmp_path / "b" / "provenance.json").is_file()
    assert "received SIGTERM during the last step of this run: finished at step 5" in capsys.readouterr().err


# ---------------------------------------------------------------- subprocesses
def _env() -> dict[str, str]:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _cmd(out_dir: Path, common: list[str], nproc: int = 1, dump: Path | None = None) -> list[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "speechunits.train.toy", "--out-dir", str(out_dir), "--device", "cpu", *common]
    return cmd + (["--dump-weights", str(dump)] if dump else [])


def _signal_mid_run(cmd: list[str], out_dir: Path, signum: int, log: Path) -> tuple[int, str]:
    """Start ``cmd``, send ``signum`` once a training step is logged, return (exit status, stderr)."""
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        try:
            deadline = time.monotonic() + 120
            metrics = out_dir / "metrics.jsonl"
            while proc.poll() is None and time.monotonic() < deadline and not (metrics.is_file() and metrics.stat().st_size):
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be signalled: " + log.read_text()[-3000:]
            proc.send_signal(signum)
            code = proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, log.read_text()


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _stopped_step(out_dir: Path, stderr: str, name: str) -> int:
    (path,) = list_checkpoints(out_dir)
    step = int(load_checkpoint(path)["step"])
    assert 0 < step < 40, step
    assert f"received {name} at step {step}: checkpoint {path}; rerun with resume=auto" in stderr
    assert not (out_dir / "provenance.json").exists()
    return step


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_plain_process_signal_exit_status_and_resume(tmp_path: Path, signum: int, reference: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "run"
    code, stderr = _signal_mid_run(_cmd(out, [*COMMON, *SLOW]), out, signum, tmp_path / "stderr.txt")
    assert code == 128 + signum, stderr[-3000:]
    step = _stopped_step(out, stderr, signal.Signals(signum).name)
    resumed = _run(_cmd(out, [*COMMON, *SLOW], dump=tmp_path / "w"))
    assert f"resuming from {out / 'checkpoints' / f'step_{step:08d}.pt'}" in resumed.stderr
    assert "finished at step 40" in resumed.stderr
    _same(reference, torch.load(tmp_path / "w" / "weights_rank0.pt", weights_only=True))


@pytest.mark.slow
def test_torchrun_sigterm_checkpoints_on_both_ranks_and_resumes(tmp_path: Path) -> None:
    """SIGTERM to torchrun, which forwards it to its workers: the ranks agree on one step,
    checkpoint it, leave; the resumed run ends where an uninterrupted 2-rank run ends."""
    out = tmp_path / "run"
    code, stderr = _signal_mid_run(_cmd(out, DDP, nproc=2), out, signal.SIGTERM, tmp_path / "stderr.txt")
    assert code != 0
    step = _stopped_step(out, stderr, "SIGTERM")
    assert stderr.count("received SIGTERM at step") == 1  # rank 0 alone says it
    assert load_checkpoint(out / "checkpoints" / f"step_{step:08d}.pt")["world_size"] == 2
    resumed = _run(_cmd(out, DDP, nproc=2, dump=tmp_path / "w"))
    assert f"resuming from {out / 'checkpoints' / f'step_{step:08d}.pt'}" in resumed.stderr
    _run(_cmd(tmp_path / "ref", DDP, nproc=2, dump=tmp_path / "wref"))
    w0, w1, ref = (torch.load(tmp_path / d / f"weights_rank{r}.pt", weights_only=True) for d, r in (("w", 0), ("w", 1), ("wref", 0)))
    _same(w0, w1)
    _same(ref, w0)
