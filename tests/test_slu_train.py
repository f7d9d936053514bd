"""SLU TrainTask: method switches, deterministic length-pooled batches, memory/KD rows, and
training through the shared Trainer (loss goes down, resume continues the same run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.errors import ConfigError
from speechunits.slu.data import SLUExample
from speechunits.slu.encoders import MelConformerEncoder
from speechunits.slu.model import SLUModel
from speechunits.slu.objective import CoconutObjective, CoconutWeights
from speechunits.slu.tokenizer import train_tokenizer
from speechunits.slu.inputs import AudioCache
from speechunits.slu.train_task import METHODS, SLUTrainTask, make_batch, method_spec
from speechunits.train import load_config
from speechunits.train.loop import Trainer

torch.set_num_threads(1)

CLASSES = {"up_x_none": ("go up", 300.0), "down_x_none": ("go down", 900.0), "left_x_none": ("turn left", 2000.0)}


class FakeAudio(AudioCache):
    """Tones in memory instead of files: the cache is keyed by the example's audio string."""

    def __init__(self, examples: list[SLUExample]) -> None:
        super().__init__()
        for i, ex in enumerate(examples):
            freq = CLASSES[ex.label][1]
            n = 3200 + 400 * (i % 5)
            self._waves[ex.audio] = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000)).astype(np.float32)


def make_examples(per_class: int = 4) -> list[SLUExample]:
    out = []
    for label, (text, _) in CLASSES.items():
        for k in range(per_class):
            out.append(SLUExample(f"{label}-{k}", f"mem://{label}/{k}", text, label))
    return out


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "bpe.model"
    return train_tokenizer([t for t, _ in CLASSES.values()] * 3, list(CLASSES), path, vocab_size=40)


def objective(vocab: int, weights: CoconutWeights | None = None, seed: int = 0) -> CoconutObjective:
    torch.manual_seed(seed)
    enc = MelConformerEncoder(n_mels=40, d_model=32, num_layers=1, num_heads=4, ffn_dim=64, kernel_size=7, dropout=0.0)
    model = SLUModel(enc, vocab, d_model=32, num_layers=1, num_heads=4, ffn_dim=64, dropout=0.0, max_decode_len=12)
    return CoconutObjective(model, proj_dim=16, hidden_dim=32, weights=weights)


def test_method_switches() -> None:
    base = CoconutWeights(nspt=0.3, mm=0.2, kd=0.7, nspt_temperature=0.5, mm_temperature=0.3, mm_on="all")
    assert set(METHODS) == {"ft", "er", "er_kd", "coconut", "coconut_kd", "joint"}
    w = {name: spec.weights(base) for name, spec in METHODS.items()}
    assert (w["ft"].nspt, w["ft"].mm, w["ft"].kd) == (0, 0, 0) and not METHODS["ft"].memory
    assert (w["er"].nspt, w["er"].mm, w["er"].kd) == (0, 0, 0) and METHODS["er"].memory
    assert (w["er_kd"].nspt, w["er_kd"].mm, w["er_kd"].kd) == (0, 0, 0.7) and METHODS["er_kd"].needs_teacher
    assert (w["coconut"].nspt, w["coconut"].mm, w["coconut"].kd) == (0.3, 0.2, 0)
    assert (w["coconut_kd"].nspt, w["coconut_kd"].mm, w["coconut_kd"].kd) == (0.3, 0.2, 0.7)
    # the settings of unused losses stay at their defaults: a temperature tuned for COCONUT is not ER's
    assert (w["coconut"].nspt_temperature, w["coconut"].mm_temperature, w["coconut"].mm_on) == (0.5, 0.3, "all")
    assert w["er_kd"] == CoconutWeights(nspt=0.0, mm=0.0, kd=0.7)
    assert METHODS["joint"].joint and not METHODS["joint"].memory and not METHODS["er"].needs_teacher
    with pytest.raises(ConfigError, match="unknown method 'icarl'"):
        method_spec("icarl")


def test_batches_deterministic_cover_epoch_and_mark_memory(tokenizer) -> None:
    exs = make_examples(per_class=7)
    audio = FakeAudio(exs)
    memory = {exs[0].id, exs[8].id}
    index = {c: i for i, c in enumerate(CLASSES)}
    task = SLUTrainTask(objective(tokenizer.vocab_size), exs, memory, tokenizer, index, audio, batch_size=4, seed=3)
    assert task.num_batches() == math.ceil(21 / 4)
    first = task.epoch_batches(0)
    assert first == task.epoch_batches(0) and first != task.epoch_batches(1)
    assert sorted(i for b in first for i in b) == list(range(21))  # every example once per epoch
    assert len(first) == task.num_batches()
    # resumed iteration (start=k) yields the same batches as skipping k
    full = list(task.batches(0))
    tail = list(task.batches(0, start=2))
    assert len(tail) == len(full) - 2 and all(torch.equal(a["audio"], b["audio"]) for a, b in zip(full[2:], tail))
    seen_mem = 0
    for b, rows in zip(full, first):
        ids = [exs[i].id for i in rows]
        assert b["is_memory"].tolist() == [i in memory for i in ids]
        assert b["labels"].tolist() == [index[exs[i].label] for i in rows]
        seen_mem += int(b["is_memory"].sum())
        assert b["kd_in"].shape[0] == 0  # no KD hypotheses given
        assert int(b["audio_lens"].max()) == b["audio"].shape[1]
    assert seen_mem == 2


def test_kd_rows_follow_memory_order(tokenizer) -> None:
    exs = make_examples(per_class=2)
    audio = FakeAudio(exs)
    memory = frozenset({exs[1].id, exs[4].id})
    hyps = {exs[1].id: [5, 6, 7], exs[4].id: [8]}
    batch = make_batch(exs, tokenizer, {c: i for i, c in enumerate(CLASSES)}, audio, memory, hyps)
    assert batch["is_memory"].tolist() == [False, True, False, False, True, False]
    assert batch["kd_in"].tolist() == [[2, 5, 6, 7], [2, 8, 0, 0]]
    assert batch["kd_out"].tolist() == [[5, 6, 7, 3], [8, 3, 0, 0]]
    with pytest.raises(ValueError, match="no teacher hypothesis"):
        SLUTrainTask(objective(tokenizer.vocab_size), exs, memory, tokenizer, {}, audio, 2, kd_hyps={exs[1].id: [5]})


def test_training_step_losses_with_teacher(tokenizer) -> None:
    exs = make_examples(per_class=3)
    audio = FakeAudio(exs)
    memory = {exs[0].id, exs[3].id}
    obj = objective(tokenizer.vocab_size, CoconutWeights(nspt=0.5, mm=0.5, kd=1.0))
    index = {c: i for i, c in enumerate(CLASSES)}
    hyps = {k: [4, 5] for k in memory}
    task = SLUTrainTask(obj, exs, memory, tokenizer, index, audio, batch_size=9, kd_hyps=hyps)
    batch = next(iter(task.batches(0)))
    loss, parts = task.training_step(batch, 0)
    assert set(parts) == {"ce", "mm", "memory_frac"}  # no teacher yet: no NSPT / KD
    obj.start_task()
    loss, parts = task.training_step(batch, 0)
    assert {"ce", "mm", "nspt", "kd"} <= set(parts) and torch.isfinite(loss)
    expected = parts["ce"] + 0.5 * parts["mm"] + 0.5 * parts["nspt"] + 1.0 * parts["kd"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in obj.teacher[0].parameters())


def test_trainer_fits_and_resumes_same_run(tokenizer, tmp_path) -> None:
    exs = make_examples(per_class=4)
    audio = FakeAudio(exs)
    index = {c: i for i, c in enumerate(CLASSES)}

    def run(out, **over):
        obj = objective(tokenizer.vocab_size)
        task = SLUTrainTask(obj, exs, set(), tokenizer, index, audio, batch_size=6, seed=1)
        cfg = load_config(None, (), base={"out_dir": str(out), "max_steps": 12, "lr": 3e-3, "precision": "fp32",
                                          "progress": False, "tensorboard": False, "log_every": 1, **over})
        metrics = Trainer(task, cfg).fit()
        return obj, metrics

    full, _ = run(tmp_path / "a")
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    import json

    losses = [json.loads(line)["train/ce"] for line in lines if "train/ce" in line]
    assert losses[-1] < 0.7 * losses[0]
    run(tmp_path / "b", stop_after=5)
    resumed, _ = run(tmp_path / "b")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
