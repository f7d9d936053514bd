"""Unit tests of the shared training loop: config, schedule, accumulation, clipping, EMA, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from speechunits.errors import CheckpointError, ConfigError
from speechunits.train import EMATeacher, LRFactor, Trainer, load_config, seed_everything
from speechunits.train.checkpoint import list_checkpoints, load_checkpoint
from speechunits.train.config import TrainConfig, config_diff, config_to_dict
from speechunits.train.logger import read_metrics
from speechunits.train.loop import param_groups
from speechunits.train.rng import capture_rng_state, restore_rng_state
from speechunits.train.toy import ToyRegressionTask


def cfg(tmp_path: Path, **kw: Any) -> TrainConfig:
    base = {"out_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False, "log_every": 1, "save_every": 1000}
    base.update(kw)
    return load_config(overrides=[f"{k}={v}" for k, v in base.items() if not isinstance(v, dict)] + [
        f"task.{k}={v}" for k, v in base.get("task", {}).items()
    ])


class LinearTask:
    """y = x w: fixed data in a fixed order, ``batch`` rows per micro-batch."""

    def __init__(self, batch: int, seed: int = 0, clip_probe: list[float] | None = None) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.randn(4, 1, generator=g)
        torch.manual_seed(seed)
        self.model = nn.Linear(4, 1)
        self.batch = batch
        self.clip_probe = clip_probe

    def batches(self, epoch: int):
        for i in range(0, 64, self.batch):
            yield self.x[i : i + self.batch], self.y[i : i + self.batch]

    def training_step(self, batch, step):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        return loss, {}

    def on_step_end(self, step: int) -> None:
        if self.clip_probe is not None:
            grads = [p.grad for p in self.model.parameters()]
            self.clip_probe.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


# ---------------------------------------------------------------- config
def test_config_yaml_and_overrides(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("lr: 0.001\nbetas: [0.8, 0.9]\ntask:\n  crop_s: 5\n")
    c = load_config(y, ["lr=0.002", "task.extra=true", "schedule=linear"])
    assert c.lr == 0.002 and c.betas == [0.8, 0.9] and c.schedule == "linear"
    assert c.task == {"crop_s": 5, "extra": True}


def test_config_errors_name_the_source(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("lrr: 0.1\n")
    with pytest.raises(ConfigError, match="c.yaml"):
        load_config(y)
    with pytest.raises(ConfigError, match="schedule"):
        load_config(None, ["schedule=exp"])
    with pytest.raises(ConfigError, match="accum_steps"):
        load_config(None, ["accum_steps=0"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_diff_ignores_bookkeeping_keys() -> None:
    a = config_to_dict(TrainConfig())
    b = config_to_dict(TrainConfig(log_every=3, save_every=7, out_dir="x", resume="never", lr=5e-5, task={"k": 1}))
    diff = config_diff(a, b)
    assert diff == ["lr: 0.0001 -> 5e-05", "task.k: <unset> -> 1"]


# ---------------------------------------------------------------- schedule
def test_lr_factor_warmup_then_decay() -> None:
    f = LRFactor("cosine", warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    vals = [f(s) for s in range(16)]
    assert vals[:4] == [0.25, 0.5, 0.75, 1.0]
    assert vals[4] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(vals[4:14], vals[5:14]))
    assert vals[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert vals[14] == pytest.approx(0.1) and vals[15] == pytest.approx(0.1)
    lin = LRFactor("linear", 0, 10)
    assert [lin(s) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert LRFactor("constant", 2, 10)(7) == 1.0
    with pytest.raises(ConfigError):
        LRFactor("step", 0, 10)


def test_trainer_steps_the_lr(tmp_path: Path) -> None:
    c = cfg(tmp_path, lr=0.01, warmup_steps=3, max_steps=8, schedule="linear")
    Trainer(LinearTask(8), c).fit()
    lrs = [r["train/lr"] for r in read_metrics(c.out_dir) if "train/lr" in r]
    assert len(lrs) == 8
    expected = [0.01 * LRFactor("linear", 3, 8)(s) for s in range(8)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] < lrs[2] and lrs[3] > lrs[7]


# ---------------------------------------------------------------- optimisation
def test_grad_accumulation_matches_larger_batch(tmp_path: Path) -> None:
    runs = []
    for batch, accum in ((4, 2), (8, 1)):
        c = cfg(tmp_path / f"b{batch}", lr=0.05, max_steps=6, accum_steps=accum, weight_decay=0.1)
        task = LinearTask(batch)
        Trainer(task, c).fit()
        runs.append(task.model.state_dict())
    init = LinearTask(8).model.state_dict()
    for k in init:
        assert torch.allclose(runs[0][k], runs[1][k], atol=1e-6), k
        assert not torch.allclose(runs[0][k], init[k])  # it did train


def test_clipping_is_applied(tmp_path: Path) -> None:
    probe: list[float] = []
    c = cfg(tmp_path, lr=0.01, max_steps=4, clip_norm=0.05)
    Trainer(LinearTask(8, clip_probe=probe), c).fit()
    logged = [r["train/grad_norm"] for r in read_metrics(c.out_dir) if "train/grad_norm" in r]
    assert len(probe) == 4 and all(g > 0.05 * 10 for g in logged)  # the raw norms are large
    assert all(p == pytest.approx(0.05, rel=1e-4) for p in probe)  # the applied ones are clipped


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4  # two biases + norm weight and bias


def test_bf16_requires_cuda(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bf16"):
        Trainer(LinearTask(8), cfg(tmp_path, precision="bf16"))


def test_non_finite_loss_is_reported(tmp_path: Path) -> None:
    task = LinearTask(8)
    task.x[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 0"):
        Trainer(task, cfg(tmp_path, max_steps=2)).fit()


# ---------------------------------------------------------------- EMA / RNG
def test_ema_teacher() -> None:
    student = nn.Linear(2, 2)
    frozen, half = EMATeacher(student, decay=1.0), EMATeacher(student, decay=0.5)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    frozen.update(student)
    half.update(student)
    for k, v in frozen.module.state_dict().items():
        assert torch.equal(v, before[k])
        assert torch.allclose(half.module.state_dict()[k], before[k] + 0.5)
    assert not any(p.requires_grad for p in half.module.parameters())
    clone = EMATeacher(nn.Linear(2, 2), decay=0.1)
    clone.load_state_dict(half.state_dict())
    assert clone.decay == 0.5 and clone.num_updates == 1
    assert torch.equal(clone.module.weight, half.module.weight)
    with pytest.raises(ConfigError):
        EMATeacher(student, decay=1.5)


def test_rng_capture_restore_roundtrip() -> None:
    import random

    import numpy as np

    seed_everything(3)
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_contents_and_keep_last(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_steps=10, save_every=2, keep_last=2, log_every=5)
    Trainer(ToyRegressionTask(c), c).fit()
    ckpts = list_checkpoints(c.out_dir)
    assert [p.name for p in ckpts] == ["step_00000008.pt", "step_00000010.pt"]
    state = load_checkpoint(ckpts[-1])
    assert state["step"] == 10 and state["world_size"] == 1 and len(state["rng"]) == 1
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)  # 8 batches per epoch
    assert state["config"]["max_steps"] == 10
    assert state["task"]["steps_seen"] == 10 and "module" in state["task"]["teacher"]
    assert state["scheduler"]["last_epoch"] == 10
    assert (Path(c.out_dir) / "config.yaml").is_file() and (Path(c.out_dir) / "provenance.json").is_file()
    assert any("valid/mse" in r for r in read_metrics(c.out_dir))


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_steps=4, save_every=2)
    Trainer(ToyRegressionTask(c), c).fit()
    c2 = cfg(tmp_path, max_steps=4, save_every=2, lr=0.5, task={"hidden": 16, "dropout": 0.2})
    with pytest.raises(CheckpointError) as err:
        Trainer(ToyRegressionTask(c2), c2).fit()
    msg = str(err.value)
    assert "step_00000004.pt" in msg and "lr: 0.0001 -> 0.5" in msg and "task.dropout" in msg
    assert "task.hidden" in msg  # unset in the checkpoint's config, set now
    # bookkeeping keys may change; resume_force overrides the check
    c3 = cfg(tmp_path, max_steps=4, save_every=3, log_every=2)
    Trainer(ToyRegressionTask(c3), c3).fit()
    c4 = cfg(tmp_path, max_steps=6, save_every=2, resume_force=True)
    t = Trainer(ToyRegressionTask(c4), c4)
    t.fit()
    assert t.step == 6 and t.resumed_from is not None and t.resumed_from.name == "step_00000004.pt"


def test_training_longer_with_resume_force_follows_the_new_schedule(tmp_path: Path) -> None:
    """Raising max_steps on a finished run: the decay restarts from the new config, not at lr 0."""
    from speechunits.train.schedule import LRFactor

    c = cfg(tmp_path, max_steps=4, save_every=4, schedule="linear", warmup_steps=1, lr=0.01)
    Trainer(ToyRegressionTask(c), c).fit()
    assert [r["train/lr"] for r in read_metrics(c.out_dir) if "train/lr" in r][-1] == pytest.approx(0.01 / 3)
    longer = cfg(tmp_path, max_steps=8, save_every=4, schedule="linear", warmup_steps=1, lr=0.01, resume_force=True)
    Trainer(ToyRegressionTask(longer), longer).fit()
    lrs = {r["step"]: r["train/lr"] for r in read_metrics(c.out_dir) if "train/lr" in r}
    want = LRFactor("linear", 1, 8)
    assert [lrs[s] for s in (5, 8)] == pytest.approx([0.01 * want(4), 0.01 * want(7)])
    assert lrs[5] > 0.005  # the old schedule had decayed to 0 at step 4


def test_resume_never_starts_over(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_steps=3)
    Trainer(ToyRegressionTask(c), c).fit()
    c2 = cfg(tmp_path, max_steps=3, resume="never", lr=0.5)
    t = Trainer(ToyRegressionTask(c2), c2)
    t.fit()
    assert t.resumed_from is None and load_checkpoint(list_checkpoints(c.out_dir)[-1])["config"]["lr"] == 0.5
    # the earlier run's checkpoints and logs were set aside, not mixed with the new run's
    (aside,) = Path(c.out_dir).glob("replaced-*")
    assert [p.name for p in list_checkpoints(aside)] == ["step_00000003.pt"]
    assert load_checkpoint(list_checkpoints(aside)[0])["config"]["lr"] == 0.0001
    assert [r["step"] for r in read_metrics(aside) if "train/loss" in r] == [1, 2, 3]


def test_resume_from_explicit_path(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_steps=6, save_every=2, keep_last=0)
    ref = Trainer(ToyRegressionTask(c), c)
    ref.fit()
    c2 = cfg(tmp_path / "other", max_steps=6, resume=str(Path(c.out_dir) / "checkpoints" / "step_00000004.pt"))
    t = Trainer(ToyRegressionTask(c2), c2)
    t.fit()
    assert t.resumed_from is not None and t.resumed_from.name == "step_00000004.pt"
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, t.model.state_dict()[k])
    c3 = cfg(tmp_path / "third", resume=str(tmp_path / "nowhere.pt"))
    with pytest.raises(CheckpointError, match="nowhere.pt"):
        Trainer(ToyRegressionTask(c3), c3).fit()
    assert math.isfinite(t.last_metrics["loss"])


class MediaTask(LinearTask):
    """LinearTask with validation media: one audio clip and one picture per validation."""

    def __init__(self) -> None:
        super().__init__(batch=16)
        self.media_steps: list[int] = []

    def validate(self, step: int) -> dict[str, float]:
        return {"w": float(self.model.weight.sum())}

    def media(self, step: int) -> dict[str, Any]:
        self.media_steps.append(step)
        t = torch.arange(1600) / 16000
        picture = torch.zeros(8, 12, 3, dtype=torch.uint8)
        picture[:, :6, 0] = 255
        return {"audio": {"tone": ((0.5 * torch.sin(2 * math.pi * 440 * t)).numpy(), 16000)},
                "images": {"mel": picture.numpy()}}


def test_media_hook_writes_audio_and_images_to_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = MediaTask()
    Trainer(task, cfg(tmp_path, max_steps=4, validate_every=2, tensorboard=True)).fit()
    assert task.media_steps == [2, 4]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    assert events.Tags()["audio"] == ["valid/tone"]
    assert events.Tags()["images"] == ["valid/mel"]
    assert [e.step for e in events.Audio("valid/tone")] == [2, 4]
    assert events.Audio("valid/tone")[0].sample_rate == 16000
    img = events.Images("valid/mel")[0]
    assert (img.width, img.height) == (12, 8)


def test_dataclass_batches_are_moved_field_by_field() -> None:
    import dataclasses

    from speechunits.train.loop import move_to

    @dataclasses.dataclass
    class Batch:
        x: torch.Tensor
        names: list[str]
        y: torch.Tensor | None = None

    moved = move_to(Batch(torch.zeros(2, dtype=torch.float64), ["a"]), torch.device("meta"))
    assert moved.x.device.type == "meta" and moved.names == ["a"] and moved.y is None
