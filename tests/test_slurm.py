"""Corpus jobs and training on a real one-node Slurm (the ``slurm_cluster`` fixture, tests/slurm_cluster.py).

* ``tokenize --nj 3 --cmd slurm`` (one sbatch array) writes the same bytes as ``--cmd local``;
* a shard that dies is reported (shard, how it ended, log) and a rerun resubmits only it;
* a 2-task ``srun`` DDP run of the toy task (ranks from the Slurm environment) and a two-"node"
  ``speechunits launch --nnodes 2`` (srun torchrun, c10d rendezvous) give the weights of the
  local ``torchrun`` run;
* a training job cancelled with ``scancel`` checkpoints on SIGTERM and the same launch resumes
  it; a job sent SIGUSR1 (what ``--signal=B:USR1@GRACE`` does before the time limit)
  checkpoints, requeues itself and finishes, with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import save_encoder
from speechunits.slurm import job_states, submit, wait_for_job
from slurm_cluster import SlurmCluster
from synthetic_inputs import randomised_tiny_model, speechlike

pytestmark = pytest.mark.slurm

SR = 16000
PY = sys.executable


def one_thread() -> dict[str, str]:
    """This environment with OMP_NUM_THREADS=1. torchrun --standalone gives each of several workers one thread, a
    torchrun of one worker per "node" does not, and another thread count may round differently: the DDP
    comparisons run every rank on one thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def speechunits(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "speechunits", *args], capture_output=True, text=True, env=env or os.environ.copy(),
                          cwd=cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model and 7 utterances: shards of 3, 2 and 2 with --nj 3."""
    root = tmp_path_factory.mktemp("slurm-corpus")
    save_encoder(root / "model.pt", randomised_tiny_model())
    utts = []
    for i in range(7):
        path = root / "audio" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speechlike(0.6 + 0.2 * i, i), SR)
        utts.append(Utterance(f"spk{i % 2}-u{i}", str(path), speaker=f"spk{i % 2}"))
    write_jsonl_manifest(utts, root / "data.jsonl")
    return {"root": root, "model": root / "model.pt", "data": root / "data.jsonl"}


def tokenize_args(corpus: dict[str, Path], out: Path) -> list[str]:
    return ["tokenize", "--model", str(corpus["model"]), "--data", str(corpus["data"]), "--out", str(out),
            "--device", "cpu", "--batch-seconds", "3", "--norm-threshold", "1.0", "--num-workers", "1", "--nj", "3"]


def output_files(out: Path) -> dict[str, bytes]:
    """Every file of an output but its logs, job scripts and job records (provenance without its clock)."""
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith("log/"):
            data = path.read_bytes()
            if rel == "provenance.json":
                prov = json.loads(data)
                prov.pop("finished")
                data = json.dumps(prov, sort_keys=True).encode()
            files[rel] = data
    return files


@pytest.fixture(scope="module")
def local_tokens(corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "units"
    r = speechunits(*tokenize_args(corpus, out), "--cmd", "local")
    assert r.returncode == 0, r.stderr
    return out


def test_tokenize_array_is_byte_identical_to_local(slurm_cluster: object, corpus: dict[str, Path], local_tokens: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "units"
    r = speechunits(*tokenize_args(corpus, out), "--cmd", "slurm --num-threads 1")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "submitted Slurm array job" in r.stderr and "(3 task(s), 1 thread(s) each)" in r.stderr
    assert output_files(out) == output_files(local_tokens)
    assert (out / "units.jsonl").read_bytes() == (local_tokens / "units.jsonl").read_bytes()
    for job in range(3):  # each task logs where a local job does, its command line first
        log = (out / "log" / f"tokenize.{job}.log").read_text()
        assert log.startswith(f"{PY} -m speechunits tokenize ") and f"--job {job}" in log.splitlines()[0]
        assert f"tokenize: Slurm task " in r.stderr
    rerun = speechunits(*tokenize_args(corpus, out), "--cmd", "slurm")
    assert rerun.returncode == 0 and "complete for this config; nothing to do" in rerun.stderr


def test_failed_shard_is_reported_and_only_it_resubmitted(slurm_cluster: object, corpus: dict[str, Path],
                                                          local_tokens: Path, tmp_path: Path) -> None:
    out = tmp_path / "units"
    # shard 0 (3 utterances) dies by SIGKILL at its third unit line; shards 1 and 2 (2 each) never get there
    env = {**os.environ, "SPEECHUNITS_KILL_AT": "unit-line:units.#.partial.jsonl#3"}
    r = speechunits(*tokenize_args(corpus, out), "--cmd", "slurm", env=env)
    assert r.returncode == 1, r.stderr
    log = out / "log" / "tokenize.0.log"
    assert f"tokenize: job 0 failed (exit code 0, signal 9); see {log}" in r.stderr, r.stderr
    assert "1 of 3 job(s) failed; rerun the same command to resume" in r.stderr
    finished = {j: json.loads((out / f"tokenize.{j}.json").read_text())["finished"] for j in range(3)}
    assert finished == {0: False, 1: True, 2: True} and not (out / "units.jsonl").exists()
    kept = {j: (out / "log" / f"tokenize.{j}.log").stat().st_mtime_ns for j in (1, 2)}
    again = speechunits(*tokenize_args(corpus, out), "--cmd", "slurm")
    assert again.returncode == 0, again.stderr
    assert "(1 task(s)" in again.stderr and "--array=0 " in again.stderr
    assert {j: (out / "log" / f"tokenize.{j}.log").stat().st_mtime_ns for j in (1, 2)} == kept
    assert output_files(out) == output_files(local_tokens)


def test_a_rerun_waits_for_the_array_of_a_killed_dispatcher(slurm_cluster: object, corpus: dict[str, Path],
                                                            local_tokens: Path, tmp_path: Path) -> None:
    """The submitting process dies (its shell was closed) while the array runs: the rerun waits for that array
    instead of submitting a second writer of the same shards."""
    out = tmp_path / "units"
    env = {**os.environ, "SPEECHUNITS_JOB_DELAY": "1.5"}  # each task takes a few seconds
    proc = subprocess.Popen([PY, "-m", "speechunits", *tokenize_args(corpus, out), "--cmd", "slurm"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = out / "log" / "tokenize.slurm.json"
    deadline = time.monotonic() + 60
    while not record.is_file():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    job = json.loads(record.read_text())["job_id"]
    again = speechunits(*tokenize_args(corpus, out), "--cmd", "slurm")
    assert again.returncode == 0, again.stderr
    assert re.search(f"Slurm job {job} of an earlier run still has [123] task\\(s\\) queued or running; waiting for it",
                     again.stderr), again.stderr
    assert "submitted" not in again.stderr
    assert output_files(out) == output_files(local_tokens)


def test_one_shard_is_one_slurm_job(slurm_cluster: object, corpus: dict[str, Path], tmp_path: Path) -> None:
    """--nj 1 with a cluster --cmd submits the shard rather than running it on the submitting machine."""
    out = tmp_path / "segments"
    r = speechunits("bootstrap-segments", "--data", str(corpus["data"]), "--out", str(out), "--cmd", "slurm")
    assert r.returncode == 0, r.stderr
    assert "--array=0 " in r.stderr and (out / "log" / "bootstrap-segments.0.log").is_file()
    assert len((out / "units.jsonl").read_text().splitlines()) == 7


def test_unknown_slurm_option_fails_before_any_work(corpus: dict[str, Path], tmp_path: Path) -> None:
    r = speechunits(*tokenize_args(corpus, tmp_path / "units"), "--cmd", "slurm --partitoin gpu")
    assert r.returncode == 2
    assert "slurm option(s) --partitoin are not defined here; it defines: --time, --mem" in r.stderr
    assert not (tmp_path / "units").exists()


# ------------------------------------------------------------------ training
TOY = ["--module", "speechunits.train.toy", "--"]


def toy_args(out: Path, *extra: str) -> list[str]:
    """Overrides first: the toy's KEY=VALUE positionals must come before its options."""
    return [f"out_dir={out}", "progress=false", *extra, "--device", "cpu", "--dump-weights", str(out / "weights")]


def weights(out: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(out / "weights" / f"weights_rank{rank}.pt", map_location="cpu", weights_only=True)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def two_rank_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy task on 2 local ranks (torchrun --standalone, gloo)."""
    out = tmp_path_factory.mktemp("ddp-local") / "run"
    r = speechunits("launch", "--nproc-per-node", "2", *TOY, *toy_args(out, "max_steps=12"), env=one_thread())
    assert r.returncode == 0, r.stderr
    return out


def test_two_node_launch_matches_local_torchrun(slurm_cluster: object, two_rank_reference: Path, tmp_path: Path) -> None:
    """``launch --nnodes 2`` = srun of one torchrun per "node" with c10d rendezvous. The test cluster has
    one node, so its slurm.conf gives the two "nodes" as two tasks there (one line a user would not write)."""
    conf = tmp_path / "slurm.conf"
    from speechunits.slurm import DEFAULT_CONFIG

    conf.write_text(DEFAULT_CONFIG.replace("option num_nodes=* --nodes $0 --ntasks-per-node 1", "option num_nodes=* --ntasks $0"))
    out, log = tmp_path / "run", tmp_path / "log" / "train.slurm.log"
    r = speechunits("launch", "--cmd", f"slurm --config {conf}", "--nnodes", "2", "--nproc-per-node", "1", "--log",
                    str(log), *TOY, *toy_args(out, "max_steps=12"), env=one_thread())
    assert r.returncode == 0, r.stderr + log.read_text()
    text = log.read_text()
    assert "--rdzv-backend c10d" in log.with_suffix(".sh").read_text() and "rendezvous" in text
    assert text.count("finished at step 12") == 2  # both ranks
    for rank in (0, 1):
        assert same_weights(weights(out, rank), weights(two_rank_reference, rank))


def test_srun_two_tasks_take_ranks_from_slurm(slurm_cluster: object, two_rank_reference: Path, tmp_path: Path) -> None:
    """``srun -n 2 python -m ...`` without torchrun: the loop reads SLURM_PROCID/NTASKS/LOCALID and the node list."""
    out = tmp_path / "run"
    script = tmp_path / "job.sh"
    step = " ".join([PY, "-m", "speechunits.train.toy", *toy_args(out, "max_steps=12")])
    script.write_text(f"#!/bin/bash\nsrun {step}\n")
    log = tmp_path / "job.log"
    job = submit(["sbatch", "--ntasks=2", "--export=ALL,OMP_NUM_THREADS=1", f"--output={log}", f"--chdir={tmp_path}"],
                 script)
    end = wait_for_job(job, [None])[None]
    assert end.ok, f"{end.describe()}\n{log.read_text()}"
    for rank in (0, 1):
        assert same_weights(weights(out, rank), weights(two_rank_reference, rank))


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted one-process run of the slow toy task the kill tests stop half-way."""
    out = tmp_path_factory.mktemp("long") / "run"
    r = speechunits("launch", *TOY, *toy_args(out, *LONG))
    assert r.returncode == 0, r.stderr
    return out


LONG = ["max_steps=40", "save_every=1000", "log_every=1", "task.step_sleep=0.15", "resume=auto"]


def start_long_job(out: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    """``launch --cmd slurm`` of the slow toy run in the background; returns it and its job id once steps are logged."""
    proc = subprocess.Popen([PY, "-m", "speechunits", "launch", "--cmd", "slurm", "--log", str(log), *TOY,
                             *toy_args(out, *LONG)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    metrics = out / "metrics.jsonl"
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 5):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    return proc, json.loads(log.with_suffix(".json").read_text())["job_id"]


def checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[-1]) for p in (out / "checkpoints").glob("*.pt"))


def test_scancel_checkpoints_and_launch_resumes(slurm_cluster: object, long_reference: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "log" / "train.slurm.log"
    proc, job = start_long_job(out, log)
    subprocess.run(["scancel", job], check=True)
    said = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1 and f"Slurm job {job} did not complete (CANCELLED" in said, said
    assert "received SIGTERM at step" in log.read_text()
    steps = checkpoint_steps(out)
    assert len(steps) == 1 and 5 <= steps[0] < 40, steps
    again = speechunits("launch", "--cmd", "slurm", "--log", str(log), *TOY, *toy_args(out, *LONG))
    assert again.returncode == 0, again.stderr
    assert f"resuming from" in log.read_text()
    assert same_weights(weights(out), weights(long_reference))


def test_time_limit_signal_checkpoints_requeues_and_finishes(slurm_cluster: SlurmCluster, long_reference: Path,
                                                             tmp_path: Path) -> None:
    """SIGUSR1 to the batch shell is what ``--signal=B:USR1@GRACE`` sends before the time limit."""
    out, log = tmp_path / "run", tmp_path / "log" / "train.slurm.log"
    proc, job = start_long_job(out, log)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    # Slurm makes a requeued batch job eligible only about 2 minutes later; the test makes it eligible 2 s after
    # slurmd is done with the first start: slurmd refuses a start whose credential is from the second in which it
    # revoked the previous one ("Job N already killed, do not launch batch job"), which the 2 minutes avoid
    deadline = time.monotonic() + 60
    slurmd_log = slurm_cluster.root / "log" / "slurmd.log"
    while "Restarts=1" not in (info := subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True,
                                                       text=True, check=True).stdout) or "JobState=PENDING" not in info \
            or f"[{job}.batch] done with job" not in slurmd_log.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, info
        time.sleep(0.2)
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    said = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, said + log.read_text()
    text = log.read_text()
    assert "SIGUSR1 (time limit near)" in text and f"requeueing job {job}" in text and "start 1," in text
    assert "received SIGTERM at step" in text and "resuming from" in text
    assert same_weights(weights(out), weights(long_reference))
