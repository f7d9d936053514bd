"""The vocoder GAN task: data crops, resume == uninterrupted (bitwise), DDP == one process, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.errors import ConfigError
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint
from speechunits.train.distributed import DistInfo
from speechunits.train.logger import read_metrics
from speechunits.vocoder.model import load_vocoder
from speechunits.vocoder.train_task import VocoderTask
from vocoder_corpus import DISCS, SILENCE, UNIT_HOP, make_corpus, model_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("vocoder_corpus"))


def unit_options(corpus: dict[str, Path]) -> list[str]:
    """A frame-unit model with a duration predictor, F0 and speakers, a mel warm-up, then the GAN."""
    return [
        "max_steps=8", "lr=0.002", "log_every=2", "progress=false", "tensorboard=false", "weight_decay=0.01",
        f"task.train={corpus['units']}", f"task.valid={corpus['units']}", f"task.f0={corpus['f0']}",
        "task.use_speakers=true", "task.batch_size=4", "task.segment_samples=3200", "task.adversarial_start=3",
        f"task.discriminators={DISCS}", "task.valid_utts=2",
        *model_overrides("frame_units", "task.model.use_f0=true", "task.model.duration_predictor=true",
                         "task.model.duration_dropout=0.1"),
    ]


def _train(out_dir: Path, options: list[str], *extra: str) -> Trainer:
    c = load_config(overrides=[*options, f"out_dir={out_dir}", *extra])
    seed_everything(c.seed)
    trainer = Trainer(VocoderTask(c), c)
    trainer.fit()
    return trainer


def test_batches_are_deterministic_aligned_and_split_across_ranks(corpus):
    c = load_config(overrides=unit_options(corpus))
    task = VocoderTask(c)
    a, b = list(task.batches(0)), list(task.batches(0))
    assert len(a) == 1 and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    batch = a[0]
    assert batch["wave"].shape == (4, 3200) and batch["unit_ids"].shape == (4, 10)
    assert batch["log_f0"].shape == (4, 20) and batch["speaker"].shape == (4,)
    assert int(batch["unit_ids"].max()) <= SILENCE and batch["dp_mask"].any()
    # every crop starts on a unit frame: its wave is a slice of the utterance at a multiple of unit_hop
    data = task.train_data
    for i in range(4):
        wave = batch["wave"][i].numpy()
        found = [u for u in data.utts if any(np.array_equal(data.wave(u)[s * UNIT_HOP: s * UNIT_HOP + 3200], wave)
                                             for s in range(u.num_frames - 9))]
        assert found
    halves = []
    for rank in range(2):
        t = VocoderTask(c, DistInfo(rank=rank, world_size=2))
        halves.append(next(iter(t.batches(0))))
    for k in batch:
        if k.startswith("dp_"):
            continue
        assert torch.equal(torch.cat([halves[0][k], halves[1][k]]), batch[k]), k


def test_gan_task_resume_is_bitwise_identical(corpus, tmp_path):
    opts = unit_options(corpus)
    ref = _train(tmp_path / "A", opts)
    _train(tmp_path / "B", opts, "save_every=2", "stop_after=5")
    resumed = _train(tmp_path / "B", opts, "save_every=2")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000005.pt"
    for name in ("model", "disc"):
        sa, sb = ref.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    ra = {r["step"]: r for r in read_metrics(tmp_path / "A") if "train/loss/gen" in r}
    rb = {r["step"]: r for r in read_metrics(tmp_path / "B") if "train/loss/gen" in r}
    assert sorted(ra) == sorted(rb) == [2, 4, 6, 8]
    for step, row in ra.items():
        for key in ("train/loss/gen", "train/loss/disc", "train/mel_l1/gen", "train/dur_loss/gen"):
            assert rb[step][key] == row[key], (step, key)
    assert "train/adv/gen" in ra[4] and "train/adv/gen" not in ra[2]  # adversarial losses from step 3 on
    assert [r for r in read_metrics(tmp_path / "A") if "valid/mel_l1" in r]


def test_resume_keeps_the_bad_utterance_found_while_training_out(tmp_path):
    """Audio read per call (cache_audio=false): an utterance found unreadable in epoch 0 is left
    out of epoch 1 on, in a run resumed in epoch 1 too (chaos harness, train-vocoder): the resumed
    run's weights are the uninterrupted run's."""
    from synthetic_inputs import corrupt_flac

    corpus = make_corpus(tmp_path / "c", n=6)
    corrupt_flac(corpus["wav"] / "utt03.flac")
    opts = [o for o in unit_options(corpus) if not o.startswith(("max_steps", "task.batch_size", "task.valid"))]
    opts += ["max_steps=6", "task.batch_size=2", "task.segment_samples=1600", "task.cache_audio=false"]
    ref = _train(tmp_path / "A", opts)
    _train(tmp_path / "B", opts, "save_every=2", "stop_after=4")
    resumed = _train(tmp_path / "B", opts, "save_every=2")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000004.pt"
    assert (resumed.epoch, resumed.batch_in_epoch) == (ref.epoch, ref.batch_in_epoch)
    assert resumed.task.crops.skipped_in == {"utt03": 0}
    for name in ("model", "disc"):
        sa, sb = ref.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _cli(out_dir: Path, options: list[str], *extra: str, nproc: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "speechunits", "train-vocoder", "--out-dir", str(out_dir), "--device", "cpu",
           *options, *extra]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(corpus, tmp_path):
    opts = [o for o in unit_options(corpus) if not o.startswith("task.model.duration_dropout")]
    opts += ["task.model.duration_dropout=0.0", "max_steps=4", "save_every=2"]
    _cli(tmp_path / "ddp", opts, nproc=2)
    _cli(tmp_path / "one", opts)
    a = load_checkpoint(latest_checkpoint(tmp_path / "ddp"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "one"))
    assert a["world_size"] == 2 and a["step"] == b["step"] == 4
    for k in b["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
    for k in b["extra_modules"]["disc"]:
        assert torch.allclose(a["extra_modules"]["disc"][k], b["extra_modules"]["disc"][k], atol=1e-5, rtol=1e-4), k


def test_train_vocoder_cli_writes_model_and_keeps_it_on_rerun(corpus, tmp_path):
    opts = [f"task.train={corpus['data']}", f"task.valid={corpus['data']}", "max_steps=3", "log_every=1",
            "progress=false", "task.batch_size=2", "task.segment_samples=1600", f"task.discriminators={DISCS}",
            "task.adversarial_start=2", "task.valid_utts=2", "validate_every=3", *model_overrides("mel")]
    out = tmp_path / "run"
    _cli(out, opts)
    model = load_vocoder(out / "vocoder.pt")
    assert model.cfg.input == "mel" and model.extra["step"] == 3
    assert model.extra["speakers"] == {"s0": 0, "s1": 1}
    mtime = (out / "vocoder.pt").stat().st_mtime_ns
    again = _cli(out, opts)
    assert "keeping" in again.stderr and (out / "vocoder.pt").stat().st_mtime_ns == mtime
    assert any("valid/mel_l1" in r for r in read_metrics(out))


def test_f0_without_use_f0_is_a_config_error(tmp_path):
    """A given F0 directory is never silently ignored."""
    from speechunits.train.config import load_config
    from speechunits.vocoder.train_task import VocoderTask

    corpus = make_corpus(tmp_path / "c", n=3)
    cfg = load_config(overrides=[f"out_dir={tmp_path / 'run'}", f"task.train={corpus['units']}",
                                 f"task.f0={corpus['f0']}", *model_overrides("frame_units")])
    with pytest.raises(ConfigError, match="use_f0"):
        VocoderTask(cfg)
