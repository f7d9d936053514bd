"""The Trainer puts all task state on its device, before training and after a resume.

The device here is ``meta`` (shapes only): a CPU machine can tell whether a tensor was moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from speechunits.errors import ConfigError
from speechunits.train import EMATeacher, Trainer, load_config
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.placement import place_task_state
from speechunits.train.toy import ToyRegressionTask
from speechunits.train.toy_gan import ToyGANTask

META = torch.device("meta")


def cfg(tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(overrides=[f"out_dir={tmp_path / 'run'}", "progress=false", "tensorboard=false", *overrides])


def devices(*modules: nn.Module) -> set[torch.device]:
    return {t.device for m in modules for t in [*m.parameters(), *m.buffers()]}


def test_trainer_places_task_state_on_its_device(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    task = ToyGANTask(c)
    trainer = Trainer(task, c, dist=DistInfo(device=META))
    assert devices(task.model, task.disc, task.ema.module) == {META}  # trained modules and the EMA teacher
    assert task.centres.is_meta and task.real.is_meta  # plain tensor attributes
    assert all(p.is_meta for spec in trainer.optimizers for p in spec.params)  # optimizers hold the moved parameters


def test_place_task_state_moves_attributes_and_leaves_containers() -> None:
    class Task:
        pass

    task = Task()
    task.model = nn.Linear(2, 2)
    task.weight = nn.Parameter(torch.zeros(3))
    task.ema = EMATeacher(task.model)
    task.table = [torch.zeros(1)]  # data: not searched
    task.count = 3
    place_task_state(task, META)
    assert isinstance(task.weight, nn.Parameter) and task.weight.is_meta and task.weight.requires_grad
    assert devices(task.model, task.ema.module) == {META}
    assert task.table[0].device.type == "cpu" and task.count == 3


class RunningStatsTask(ToyRegressionTask):
    """Task state with a tensor that ``load_state_dict`` replaces by the checkpoint's (a CPU
    tensor), and its own ``to`` that records where it was asked to go."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.running = torch.zeros(3)
        self.placed: list[torch.device] = []

    def to(self, device: torch.device) -> None:
        self.placed.append(device)
        place_task_state(self, device)

    def on_step_end(self, step: int) -> None:
        super().on_step_end(step)
        self.running = 0.5 * self.running + 1.0

    def validate(self, step: int) -> dict[str, float]:
        return {}  # nothing to compute on the meta device

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "running": self.running}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.running = state["running"]


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_places_the_loaded_state_again(tmp_path: Path) -> None:
    c = cfg(tmp_path, "max_steps=3")
    Trainer(RunningStatsTask(c), c).fit()
    task = RunningStatsTask(c)
    trainer = Trainer(task, c, dist=DistInfo(device=META))
    assert task.placed == [META]
    trainer.fit()  # resumes the finished run: loads the checkpoint, trains no step
    assert trainer.resumed_from is not None and trainer.step == 3
    assert task.placed == [META, META] and task.running.is_meta
    assert devices(task.model, task.teacher.module) == {META}


def test_ema_update_names_the_devices_when_they_differ() -> None:
    student = nn.Linear(2, 2)
    teacher = EMATeacher(student, decay=0.5)
    student.to(META)
    with pytest.raises(ConfigError, match="on cpu, the student's on meta"):
        teacher.update(student)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_toy_task_trains_on_cuda(tmp_path: Path) -> None:
    """The first CUDA run failed at its first EMA update: the teacher had stayed on the CPU."""
    c = cfg(tmp_path, "max_steps=3", "precision=fp32")
    task = ToyRegressionTask(c)
    data = task.x
    Trainer(task, c, dist=DistInfo(device=torch.device("cuda", 0))).fit()
    assert devices(task.model, task.teacher.module) == {torch.device("cuda", 0)} and task.teacher.num_updates == 3
    assert task.x is data and data.is_cuda  # moved in place: other references see the move
