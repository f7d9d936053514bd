"""Slurm's environment as a process-group description: hostlists, rendezvous port, precedence
of torchrun's variables, errors; and two local processes that Slurm's variables alone (set by
hand, as ``srun -n 2`` sets them) make one DDP run."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from speechunits.errors import ConfigError
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train import distributed as d
from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint
from speechunits.slurm import expand_hostlist
from speechunits.train.distributed import LaunchEnv, launch_env, slurm_rendezvous
from speechunits.train.toy import ToyRegressionTask

REPO = Path(__file__).resolve().parents[1]
STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
        "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[01-08]"}


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("cpu5", ["cpu5"]),
        ("gpu[01-04,07],cpu5", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "cpu5"]),
        ("node-[1-2]", ["node-1", "node-2"]),
        ("a[8-10]", ["a8", "a9", "a10"]),
        ("a[08-10]", ["a08", "a09", "a10"]),
        ("r[1-2]-n[1,3]", ["r1-n1", "r1-n3", "r2-n1", "r2-n3"]),
        ("10.0.0.[3-4],host.example.org", ["10.0.0.3", "10.0.0.4", "host.example.org"]),
        (" n1 ,n2", ["n1", "n2"]),
    ],
)
def test_expand_hostlist(nodelist: str, hosts: list[str]) -> None:
    assert expand_hostlist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["", "gpu[01-04", "gpu01]", "gpu[a-b]", "gpu[4-1]", "gpu[[1]]", "gpu[]", ","])
def test_expand_hostlist_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="node list"):
        expand_hostlist(bad)


def test_rendezvous_first_host_and_port_from_the_job_id() -> None:
    assert slurm_rendezvous(STEP) == ("gpu07", 20000 + 4242)  # the step's node list before the job's
    assert slurm_rendezvous({**STEP, "SLURM_JOB_ID": "123456789"}) == ("gpu07", 20000 + 123456789 % 20000)
    assert slurm_rendezvous({k: v for k, v in STEP.items() if k != "SLURM_STEP_NODELIST"})[0] == "gpu01"
    assert slurm_rendezvous({**STEP, "MASTER_ADDR": "head", "MASTER_PORT": "29500"}) == ("head", 29500)
    with pytest.raises(ConfigError, match="node list"):
        slurm_rendezvous({"SLURM_JOB_ID": "1"})
    with pytest.raises(ConfigError, match="SLURM_JOB_ID"):
        slurm_rendezvous({"SLURM_JOB_NODELIST": "n1"})
    with pytest.raises(ConfigError, match="MASTER_PORT"):
        slurm_rendezvous({**STEP, "MASTER_PORT": "70000"})


def test_launch_env_precedence() -> None:
    assert launch_env({}) == LaunchEnv()
    assert launch_env(STEP) == LaunchEnv(rank=3, world_size=4, local_rank=1, source="slurm")
    # srun also sets the step's own count; it is the step's tasks that rendezvous
    assert launch_env({**STEP, "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "4"}).world_size == 4
    # torchrun's variables win (srun torchrun ...: both are set)
    assert launch_env({**STEP, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == LaunchEnv(1, 2, 1, "torchrun")
    # one task, or no srun step (the batch script of an sbatch --ntasks=4 job): a plain process
    assert launch_env({**STEP, "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}) == LaunchEnv()
    assert launch_env({k: v for k, v in STEP.items() if k != "SLURM_NTASKS"}) == LaunchEnv()


def test_launch_env_outside_an_srun_step_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    batch_script = {k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"} | {"SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    assert launch_env(batch_script) == LaunchEnv()
    assert "not a task of an srun step" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**STEP, "SLURM_PROCID": "4"}, r"SLURM_PROCID=4 with SLURM_NTASKS=4: the rank must be in \[0, 4\)"),
        ({**STEP, "SLURM_PROCID": "-1"}, "SLURM_PROCID=-1"),
        ({**STEP, "SLURM_LOCALID": "4"}, "SLURM_LOCALID=4"),
        ({**STEP, "SLURM_NTASKS": "two"}, "SLURM_NTASKS='two': expected an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 with WORLD_SIZE=2"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
    ],
)
def test_launch_env_inconsistent_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        launch_env(env)


def test_init_distributed_sets_the_rendezvous_only_where_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append({**kw, "addr": os.environ.get("MASTER_ADDR"), "port": os.environ.get("MASTER_PORT")}))
    for name in [k for k in os.environ if k.startswith("SLURM_")] + ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]:
        monkeypatch.setenv(name, "")  # recorded, so init_distributed's own settings are undone too
        monkeypatch.delenv(name)
    for k, v in STEP.items():
        monkeypatch.setenv(k, v)
    info = d.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    assert calls == [{"backend": "gloo", "init_method": "env://", "rank": 3, "world_size": 4, "addr": "gpu07", "port": "24242"}]
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("3", "4", "1")  # as under torchrun
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("MASTER_ADDR", "head")  # the user's own value stays
    d.init_distributed("cpu")
    assert (calls[-1]["addr"], calls[-1]["port"]) == ("head", "24242")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert d.init_distributed("cpu").world_size == 1 and len(calls) == 2


# ---------------------------------------------------------------- two local "srun" tasks
COMMON = ["max_steps=12", "lr=0.01", "warmup_steps=2", "accum_steps=2", "log_every=4", "save_every=6", "keep_last=0",
          "progress=false", "tensorboard=false", "task.global_batch=8", "task.num_samples=48"]


def _free_port() -> int:
    """A free port in Slurm's derived range 20000-39999."""
    for port in random.sample(range(20000, 40000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-39999")


def test_two_slurm_tasks_train_as_one_ddp_run(tmp_path: Path) -> None:
    port = _free_port()
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    base = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    base |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "SLURM_NTASKS": "2",
             "SLURM_STEP_ID": "0", "SLURM_JOB_ID": str(1_000_000 + port - 20000), "SLURM_STEP_NODELIST": "127.0.0.[1-2]"}
    cmd = [sys.executable, "-m", "speechunits.train.toy", "--out-dir", str(tmp_path / "ddp"), "--device", "cpu", *COMMON,
           "--dump-weights", str(tmp_path / "w")]
    procs = [subprocess.Popen(cmd, env={**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    errs = []
    for p in procs:
        try:
            errs.append(p.communicate(timeout=120)[1])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-2000:] for e in errs)
    assert load_checkpoint(latest_checkpoint(tmp_path / "ddp"))["world_size"] == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        c = load_config(overrides=[*COMMON, f"out_dir={tmp_path / 'single'}"])
        seed_everything(c.seed)
        single = Trainer(ToyRegressionTask(c), c)
        single.fit()
    finally:
        torch.set_num_threads(threads)
    w0, w1 = (torch.load(tmp_path / "w" / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1))
    ws = single.model.state_dict()
    assert w0.keys() == w1.keys() == ws.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        assert torch.allclose(w0[k], ws[k], atol=1e-5, rtol=1e-4), f"2 Slurm tasks != single process on {k}"
