"""DDP under torchrun (2 CPU ranks, gloo): ranks agree, rank 0 alone writes, result == 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechunits.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from speechunits.train.logger import read_metrics

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "max_steps=12", "lr=0.01", "warmup_steps=2", "accum_steps=2", "clip_norm=1.0", "log_every=2",
    "save_every=4", "keep_last=0", "progress=false", "task.global_batch=8", "task.num_samples=48",
]
# the GAN: a clipped Adam discriminator and the config's AdamW generator, both DDP-wrapped
GAN = [
    "max_steps=12", "lr=0.005", "warmup_steps=2", "accum_steps=2", "log_every=2", "save_every=4", "keep_last=0",
    "progress=false", "task.global_batch=16", "task.num_samples=96",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _toy(
    out_dir: Path, *extra: str, nproc: int = 1, dump: Path | None = None, module: str = "speechunits.train.toy", common: list[str] = COMMON
) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", module, "--out-dir", str(out_dir), "--device", "cpu", *common, *extra]
    if dump is not None:
        cmd += ["--dump-weights", str(dump)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_torchrun_two_ranks_match_single_process(tmp_path: Path) -> None:
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # interrupted after 6 steps and resumed: per-rank RNG and data position go through the checkpoint
    _toy(ddp, "stop_after=6", nproc=2)
    first = load_checkpoint(latest_checkpoint(ddp))
    assert first["step"] == 6 and first["world_size"] == 2 and len(first["rng"]) == 2
    assert not first["rng"][0]["torch"].equal(first["rng"][1]["torch"])  # ranks are seeded apart
    resumed = _toy(ddp, nproc=2, dump=tmp_path / "w")
    assert "resuming from" in resumed.stderr
    _toy(single, dump=tmp_path / "w1")

    w0 = torch.load(tmp_path / "w" / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "w" / "weights_rank1.pt", weights_only=True)
    ws = torch.load(tmp_path / "w1" / "weights_rank0.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        assert torch.allclose(w0[k], ws[k], atol=1e-5, rtol=1e-4), f"DDP != single process on {k}"
    final = load_checkpoint(ddp / "checkpoints" / "step_00000012.pt")
    for k in w0:
        assert torch.equal(final["model"][k], w0[k])

    # only rank 0 wrote: one TensorBoard event file per launch, each log step once
    assert [p.name for p in list_checkpoints(ddp)] == [f"step_{s:08d}.pt" for s in (4, 6, 8, 12)]
    assert len(list((ddp / "tensorboard").glob("events.out.tfevents.*"))) == 2
    steps = [r["step"] for r in read_metrics(ddp) if "train/loss" in r]
    assert steps == [2, 4, 6, 8, 10, 12]
    assert not list(ddp.glob("**/*.tmp*"))
    # the logged (rank-averaged) losses agree with the single-process run
    ls = {r["step"]: r["train/loss"] for r in read_metrics(single) if "train/loss" in r}
    for r in read_metrics(ddp):
        if "train/loss" in r:
            assert r["train/loss"] == pytest.approx(ls[r["step"]], rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_torchrun_two_ranks_gan(tmp_path: Path) -> None:
    """Two DDP-wrapped modules with their own optimizers: the ranks agree, resume across the
    interruption, match one process, and rank 0 alone writes."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"

    def gan(out_dir: Path, *extra: str, nproc: int = 1, dump: Path | None = None) -> subprocess.CompletedProcess[str]:
        return _toy(out_dir, *extra, nproc=nproc, dump=dump, module="speechunits.train.toy_gan", common=GAN)

    gan(ddp, "stop_after=6", nproc=2)
    first = load_checkpoint(latest_checkpoint(ddp))
    assert first["step"] == 6 and first["world_size"] == 2 and len(first["rng"]) == 2
    assert "resuming from" in gan(ddp, nproc=2, dump=tmp_path / "w").stderr
    gan(single, dump=tmp_path / "w1")

    w0 = torch.load(tmp_path / "w" / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "w" / "weights_rank1.pt", weights_only=True)
    ws = torch.load(tmp_path / "w1" / "weights_rank0.pt", weights_only=True)
    assert {k.split(".")[0] for k in w0} == {"model", "disc"}
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        assert torch.allclose(w0[k], ws[k], atol=1e-5, rtol=1e-4), f"DDP != single process on {k}"
    final = load_checkpoint(ddp / "checkpoints" / "step_00000012.pt")
    saved = {**{f"model.{k}": v for k, v in final["model"].items()}, **{f"disc.{k}": v for k, v in final["extra_modules"]["disc"].items()}}
    assert saved.keys() == w0.keys() and all(torch.equal(saved[k], w0[k]) for k in w0)

    assert [p.name for p in list_checkpoints(ddp)] == [f"step_{s:08d}.pt" for s in (4, 6, 8, 12)]
    assert len(list((ddp / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert [r["step"] for r in read_metrics(ddp) if "train/loss/disc" in r] == [2, 4, 6, 8, 10, 12]
    ls = {r["step"]: r for r in read_metrics(single) if "train/loss/disc" in r}
    for r in read_metrics(ddp):
        for key in ("train/loss/disc", "train/loss/gen", "train/grad_norm/disc", "train/grad_norm/gen"):
            if key in r:
                assert r[key] == pytest.approx(ls[r["step"]][key], rel=1e-4, abs=1e-6), (r["step"], key)
