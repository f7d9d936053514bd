"""HuBERT masked-prediction pretraining (speechunits train-hubert) on a tiny model, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli import main
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import load_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.hubert.masking import span_mask
from speechunits.hubert.model import HubertPretrainModel
from speechunits.hubert.targets import load_frame_targets
from speechunits.hubert.task import HubertTask
from speechunits.train.config import load_config
from speechunits.units import UnitSetWriter, frames_to_runs

SR = 16000
HOP = 320


def make_corpus(root: Path, n: int = 4, seconds: float = 1.6, frame_shift: int = 0) -> tuple[Path, Path]:
    """Low and high tones between silences; the frame targets are 0 silence, 1 low, 2 high."""
    rng = np.random.default_rng(0)
    utts = []
    targets = root / "targets"
    with UnitSetWriter(targets, kind="frame", sample_rate=SR, hop=HOP, vocab_size=3) as writer:
        for i in range(n):
            num = int(seconds * SR)
            wav = np.zeros(num, dtype=np.float32)
            frames = (num - 400) // HOP + 1 + frame_shift
            ids = np.zeros(frames, dtype=np.int64)
            t = int(rng.integers(2, 6))
            while t < frames - 12:
                dur, cls = int(rng.integers(5, 12)), int(rng.integers(1, 3))
                f0 = 200.0 if cls == 1 else 900.0
                a, b = t * HOP, (t + dur) * HOP
                wav[a:b] = 0.3 * np.sin(2 * np.pi * f0 * np.arange(b - a) / SR)
                ids[t: t + dur] = cls
                t += dur + int(rng.integers(3, 8))
            path = root / f"u{i}.wav"
            sf.write(path, wav, SR)
            utts.append(Utterance(id=f"u{i}", audio=str(path), text=None, speaker="s0", num_samples=num, sample_rate=SR))
            units, starts, ends = frames_to_runs(ids)
            writer.add(id=f"u{i}", audio=str(path), num_samples=num, sample_rate=SR, starts=starts, ends=ends,
                       units=units)
    write_kaldi_dir(utts, root / "data")
    return root / "data", targets


def overrides(data: Path, targets: Path, **extra: object) -> list[str]:
    base = {"max_steps": 3, "save_every": 2, "log_every": 1, "progress": False, "tensorboard": False,
            "task.data": data, "task.targets": targets, "task.model": "tiny", "task.crop_seconds": 1.0,
            "task.max_batch_seconds": 4.0, "task.num_workers": 1, "task.mask_span": 5}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_span_mask_fraction_padding_and_determinism() -> None:
    lengths = torch.tensor([500, 300, 3])
    mask = span_mask(lengths, 500, generator=torch.Generator().manual_seed(0))
    assert not mask[1, 300:].any() and not mask[2, 3:].any()  # padding is never masked
    assert mask[2, :3].all()  # a span never runs past a short utterance
    fraction = float(mask[0].float().mean())
    assert 0.4 < fraction < 0.7  # 8 % of frames start a 10-frame span, overlapping: about half masked
    again = span_mask(lengths, 500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    least = span_mask(torch.tensor([100]), 100, mask_prob=0.0, min_spans=2, generator=torch.Generator()).sum()
    assert 10 < least <= 20  # two spans of 10, which may overlap
    with pytest.raises(ValueError, match="mask_prob"):
        span_mask(lengths, 500, mask_prob=1.5)


def test_an_empty_mask_gives_the_plain_forward_pass() -> None:
    torch.manual_seed(0)
    encoder = SpeechEncoder(EncoderConfig.tiny(dropout=0.0, layer_drop=0.0, attention_dropout=0.0,
                                               projection_dropout=0.0)).eval()
    wav, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    plain, frames = encoder(wav, lengths)
    none = torch.zeros(2, plain.shape[1], dtype=torch.bool)
    masked, _ = encoder.forward_masked(wav, lengths, none, torch.ones(64))
    assert torch.allclose(plain, masked, atol=1e-5)
    some = none.clone()
    some[0, 5:10] = True
    changed, _ = encoder.forward_masked(wav, lengths, some, torch.ones(64))
    assert not torch.allclose(changed[0], plain[0], atol=1e-3) and torch.allclose(changed[1], plain[1], atol=1e-5)


def test_the_loss_is_on_masked_frames_only(tmp_path: Path) -> None:
    data, targets = make_corpus(tmp_path, n=2)
    task = HubertTask(load_config(None, overrides(data, targets)))
    batch = next(iter(task.batches(0)))
    captured = {}
    model = task.model

    def spy(wavs, lengths, mask):
        logits, frames = model(wavs, lengths, mask)
        logits.retain_grad()
        captured.update(logits=logits, mask=mask)
        return logits, frames

    loss, metrics = task._losses(batch, task.targets, torch.Generator().manual_seed(1), spy)
    loss.backward()
    grad = captured["logits"].grad.abs().sum(dim=-1)
    assert grad[~captured["mask"]].max() == 0 and grad[captured["mask"]].min() > 0
    assert 0.0 < metrics["mask_fraction"] < 1.0


def test_train_export_load_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, targets = make_corpus(tmp_path)
    out = tmp_path / "iter1"
    assert main(["train-hubert", "--out-dir", str(out), "--device", "cpu", *overrides(data, targets)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    encoder = load_encoder(out / "model.pt", num_layers=1)  # the encoder loader reads it, truncation too
    state = torch.load(out / "checkpoints" / "step_00000003.pt", weights_only=False)["model"]
    assert torch.equal(encoder.state_dict()["encoder.feature_projection.projection.weight"],
                       state["encoder.encoder.feature_projection.projection.weight"])
    stamp = (out / "model.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train-hubert", "--out-dir", str(out), "--device", "cpu", *overrides(data, targets)]) == 0
    assert "already at step 3" in capsys.readouterr().err and (out / "model.pt").stat().st_mtime_ns == stamp


def test_masked_prediction_learns_the_targets(tmp_path: Path) -> None:
    """A few dozen updates on tones: masked-frame accuracy rises well above its start."""
    data, targets = make_corpus(tmp_path, n=4)
    cfg = load_config(None, overrides(data, targets, lr=3e-3, warmup_steps=0, max_steps=60))
    torch.manual_seed(0)
    task = HubertTask(cfg)
    opt = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    batches = list(task.batches(0))
    accs = []
    for step in range(60):
        loss, metrics = task.training_step(batches[step % len(batches)], step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accs.append(metrics["acc_masked"])
    assert np.mean(accs[-10:]) > max(0.6, np.mean(accs[:5]) + 0.25), accs


def test_clear_errors_for_bad_targets(tmp_path: Path) -> None:
    data, targets = make_corpus(tmp_path, n=2)
    other = tmp_path / "shifted"
    other.mkdir()
    _, shifted = make_corpus(other, n=2, frame_shift=-5)
    with pytest.raises(ConfigError, match="target frames but the encoder gives"):
        HubertTask(load_config(None, overrides(data, shifted)))
    few = tmp_path / "few"
    few.mkdir()
    _, one = make_corpus(few, n=1)
    with pytest.raises(ConfigError, match="no targets for 1 utterance"):
        HubertTask(load_config(None, overrides(data, one)))
    (one / "bad_utts.txt").write_text("u1\tempty audio\n")  # frame-units left it out: dropped, reported
    assert [u.id for u in HubertTask(load_config(None, overrides(data, one))).utts] == ["u0"]
    syllables = tmp_path / "syl"
    with UnitSetWriter(syllables, kind="syllable", sample_rate=SR, hop=HOP) as writer:
        writer.add(id="u0", audio="u0.wav", num_samples=SR, sample_rate=SR, starts=[0], ends=[10])
    with pytest.raises(UnitFormatError, match="must be a frame unit set"):
        load_frame_targets(syllables)
    with pytest.raises(UnitFormatError, match="targets in two unit sets"):
        load_frame_targets([targets, one])
    with pytest.raises(ConfigError, match="unknown hubert task options"):
        HubertTask(load_config(None, overrides(data, targets, **{"task.bogus": 1})))


def test_pretraining_heads_score_every_class() -> None:
    model = HubertPretrainModel(SpeechEncoder(EncoderConfig.tiny()), 7, proj_dim=16)
    logits, frames = model(torch.randn(1, 8000), torch.tensor([8000]), torch.zeros(1, 24, dtype=torch.bool))
    assert logits.shape == (1, int(frames[0]), 7) and logits.abs().max() <= 10.0 + 1e-4  # cosine / 0.1


def test_validation_reports_held_out_accuracy(tmp_path: Path) -> None:
    data, targets = make_corpus(tmp_path, n=2)
    task = HubertTask(load_config(None, overrides(data, targets, **{"task.valid_data": data,
                                                                    "task.valid_targets": targets})))
    task.model.eval()  # as the Trainer calls it
    with torch.no_grad():
        first, again = task.validate(0), task.validate(0)
    assert set(first) >= {"acc_masked", "loss_masked", "acc_unmasked", "mask_fraction"}
    assert first == again  # a fixed mask: the same model scores the same
    with pytest.raises(ConfigError, match="go together"):
        HubertTask(load_config(None, overrides(data, targets, **{"task.valid_data": data})))


@pytest.mark.slow
def test_train_hubert_under_torchrun_two_ranks(tmp_path: Path) -> None:
    """DDP (gloo, 2 CPU ranks): both ranks train on their own shards, rank 0 exports the encoder."""
    import os
    import subprocess
    import sys

    data, targets = make_corpus(tmp_path, n=6)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "speechunits", "train-hubert", "--out-dir", str(out), "--device", "cpu",
           *overrides(data, targets, max_steps=2, ddp_find_unused="true")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint

    state = load_checkpoint(latest_checkpoint(out))
    assert state["world_size"] == 2 and state["step"] == 2
    assert load_encoder(out / "model.pt").embed_dim == 64
