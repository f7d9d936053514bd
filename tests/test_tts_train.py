"""The Capacitron task on the shared Trainer: the Lagrange multiplier, resume, DDP, bad data, the CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli import main as cli_main
from speechunits.errors import CheckpointError
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint
from speechunits.train.logger import read_metrics
from speechunits.tts import load_tts
from speechunits.tts.task import TTSTask
from tts_corpus import make_corpus, tiny_options

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("tts_corpus"))


def _train(out_dir: Path, data: Path, kind: str = "VT", *extra: str) -> Trainer:
    c = load_config(overrides=[*tiny_options(kind, f"task.train={data}", f"task.valid={data}", *extra),
                               f"out_dir={out_dir}"])
    seed_everything(c.seed)
    trainer = Trainer(TTSTask(c), c)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("capacity,direction", [(0.0, 1), (1e3, -1)])
def test_beta_rises_while_kl_exceeds_capacity_and_falls_below(corpus, tmp_path, capacity, direction):
    _train(tmp_path / "run", corpus, "VT", f"task.prosody.capacity={capacity}", "task.beta_lr=0.001", "max_steps=5")
    rows = [r for r in read_metrics(tmp_path / "run") if "train/beta/main" in r]
    betas = [r["train/beta/main"] for r in rows]
    kls = [r["train/kl/main"] for r in rows]
    assert len(betas) == 5
    assert all((kl > capacity) == (direction > 0) for kl in kls)
    steps = np.diff(betas)
    assert (steps * direction > 0).all(), betas  # every update moves beta the way the constraint asks


def test_hierarchical_levels_have_their_own_multipliers(corpus, tmp_path):
    _train(tmp_path / "run", corpus, "hierarchical", "task.prosody.capacity_s=0.0", "task.prosody.capacity_p=1e3",
           "task.beta_lr=0.001", "max_steps=3")
    rows = [r for r in read_metrics(tmp_path / "run") if "train/beta_s/main" in r]
    assert rows[-1]["train/beta_s/main"] > rows[0]["train/beta_s/main"]
    assert rows[-1]["train/beta_p/main"] < rows[0]["train/beta_p/main"]


def test_resume_is_bitwise_identical(corpus, tmp_path):
    ref = _train(tmp_path / "A", corpus, "VT", "save_every=2")
    _train(tmp_path / "B", corpus, "VT", "save_every=2", "stop_after=2")
    resumed = _train(tmp_path / "B", corpus, "VT", "save_every=2")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000002.pt"
    for name in ("model", "lagrange"):
        sa, sb = ref.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    valid = [r for r in read_metrics(tmp_path / "A") if "valid/attention_failure_rate" in r]
    assert valid and {"valid/diagonality", "valid/stop_failure_rate", "valid/kl"} <= set(valid[-1])


def test_unusable_utterances_are_skipped_and_named(tmp_path):
    data = make_corpus(tmp_path / "c", missing_text=True, corrupt=True)
    c = load_config(overrides=[*tiny_options("V", f"task.train={data}"), f"out_dir={tmp_path / 'run'}"])
    task = TTSTask(c)
    assert {"notext", "corrupt"} == set(task.train_data.bad)
    assert "transcript" in task.train_data.bad["notext"]
    assert len(task.train_data) == 8


def test_nan_batches_are_skipped_with_their_ids(corpus, tmp_path, monkeypatch):
    """A poisoned batch is skipped under nonfinite=skip, logged with its utterance ids, and counted."""
    original = TTSTask.training_step

    def poisoned(self, batch, step, optimizer="main"):
        loss, metrics = original(self, batch, step, optimizer)
        return (loss * float("nan"), metrics) if step == 1 and optimizer == "main" else (loss, metrics)

    monkeypatch.setattr(TTSTask, "training_step", poisoned)
    trainer = _train(tmp_path / "run", corpus, "VT", "nonfinite=skip", "max_steps=3")
    assert trainer.skipped_steps >= 1
    lines = [json.loads(x) for x in (tmp_path / "run" / "nonfinite.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 1 and lines[0]["ids"] and all(i.startswith("utt") for i in lines[0]["ids"])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests") + os.pathsep + str(REPO)}


def _train_cli(out_dir: Path, options: list[str], nproc: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "speechunits", "train-tts", "--out-dir", str(out_dir), "--device", "cpu", *options]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ddp_two_ranks_train_one_model(corpus, tmp_path):
    opts = tiny_options("VT", f"task.train={corpus}", "task.batch_size=2", "max_steps=3", "save_every=3")
    _train_cli(tmp_path / "ddp", opts, nproc=2)
    state = load_checkpoint(latest_checkpoint(tmp_path / "ddp"))
    assert state["world_size"] == 2 and state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    model, info = load_tts(tmp_path / "ddp" / "model.pt")
    assert model.cfg.prosody.kind == "VT" and info.extra["step"] == 3


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tts_model")
    _train_cli(out, tiny_options("VT", f"task.train={corpus}", "max_steps=2"))
    return out / "model.pt"


def _synth(model: Path, out: Path, *args: str) -> list[dict]:
    assert cli_main(["tts-synthesize", "--model", str(model), "--out", str(out), "--device", "cpu", *args]) == 0
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_synthesis_modes_are_seedable_and_write_a_manifest(trained, corpus, tmp_path):
    a = _synth(trained, tmp_path / "a", "--text", "a bead", "--seeds", "0,1", "--temperature", "0",
               "--griffin-lim-iters", "2")
    b = _synth(trained, tmp_path / "b", "--text", "a bead", "--seeds", "0", "--temperature", "0",
               "--griffin-lim-iters", "2")
    assert [r["id"] for r in a] == ["utt.s0", "utt.s1"] and a[0]["mode"] == "text" and a[0]["temperature"] == 0.0
    wa, sr = sf.read(tmp_path / "a" / a[0]["audio"])
    wb, _ = sf.read(tmp_path / "b" / b[0]["audio"])
    assert sr == 16000 and np.array_equal(wa, wb)  # same seed, same audio
    att = np.load(tmp_path / "a" / a[0]["attention"])
    assert att.shape == (a[0]["decoder_steps"], a[0]["num_symbols"])
    rows = _synth(trained, tmp_path / "t", "--data", str(corpus), "--mode", "transfer", "--posterior-mean",
                  "--max-utts", "3", "--nj", "2", "--griffin-lim-iters", "2")
    assert [r["source_id"] for r in rows] == ["utt00", "utt01", "utt02"]
    assert all(r["kl"] is not None and r["kl"] >= 0 and r["reference_id"] == r["source_id"] for r in rows)
    assert all(len(r["prosody_mean"]) == 4 for r in rows) and a[0]["prosody_mean"] is None  # posterior means only
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["prosody"] == "VT" and meta["vocoder"] == "griffin-lim"


def test_style_transfer_without_reference_transcript_says_what_to_pass(trained, corpus, tmp_path, capsys):
    wav = next((corpus.parent / "wav").glob("*.wav"))
    code = cli_main(["tts-synthesize", "--model", str(trained), "--out", str(tmp_path / "s"), "--text", "a bead",
                     "--reference", str(wav), "--mode", "style"])
    assert code == 2 and "pass --reference-text" in capsys.readouterr().err
    assert not (tmp_path / "s" / "wavs").exists()  # refused before any work
    rows = _synth(trained, tmp_path / "s2", "--text", "a bead", "--reference", str(wav), "--mode", "style",
                  "--reference-text", "a cab", "--griffin-lim-iters", "2")
    assert rows[0]["mode"] == "style" and rows[0]["kl"] is not None


def test_truncated_model_file_is_a_clear_error(trained, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(trained.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_tts(bad)
