"""The class-incremental protocol end to end on a handful of tone "utterances": a 2-task
split, rehearsal with herding, teacher hypotheses for seq-KD, skip/resume of finished and
interrupted tasks, the joint upper bound, the CLI entry points and the comparison table."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from slu_tones import write_tone_slu_data

from speechunits.errors import ConfigError
from speechunits.slu import cil_cli, results_cli
from speechunits.slu import metrics as M
from speechunits.slu import protocol as P
from speechunits.slu.config import CILConfig, load_cil_config
from speechunits.slu.experiment import prepare_experiment
from speechunits.train.loop import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tone_slu_data(tmp_path_factory.mktemp("slu_data"))


def _cfg(data_dir, *over: str) -> CILConfig:
    return load_cil_config(data_dir / "conf.yaml", list(over))


def test_config_errors(data_dir) -> None:
    with pytest.raises(ConfigError, match="conf.yaml.*benchmark"):
        load_cil_config(data_dir / "conf.yaml", ["benchmark=fsc-7"])
    with pytest.raises(ConfigError, match="<command line>"):
        load_cil_config(data_dir / "conf.yaml", ["no_such_key=1"])
    with pytest.raises(ConfigError, match="train: .*schedule"):
        load_cil_config(data_dir / "conf.yaml", ["train.schedule=zigzag"])
    with pytest.raises(ConfigError, match="losses"):
        load_cil_config(data_dir / "conf.yaml", ["+losses.typo=1"])
    with pytest.raises(ConfigError, match="model.encoder.type='nope'"):
        load_cil_config(data_dir / "conf.yaml", ["model.encoder={type: nope}"])


def test_prepare_split_and_tokenizer(data_dir, tmp_path) -> None:
    data = prepare_experiment(_cfg(data_dir), data_dir, tmp_path)
    # frequency order, first task one class larger on a remainder; the space of FSC's
    # "change language" becomes '-' so the label is one intent token
    assert data.split.tasks == (("activate_lights_none", "change-language_German_none"), ("deactivate_music_none", "bring_shoes_none"))
    assert json.loads((tmp_path / "split.json").read_text())["tasks"][1] == ["deactivate_music_none", "bring_shoes_none"]
    assert set(data.tokenizer.intents) == set(data.split.classes)
    assert len(data.train) == 18 and len(data.test) == 8 and len(data.valid) == 4
    # a different split for the same experiment dir is refused
    with pytest.raises(ConfigError, match="split.json"):
        prepare_experiment(_cfg(data_dir, "num_tasks=4"), data_dir, tmp_path)


def test_protocol_er_kd_end_to_end_skip_and_resume(data_dir, tmp_path, monkeypatch) -> None:
    cfg = _cfg(data_dir)
    fits: list[str] = []
    real_fit = Trainer.fit

    def counting_fit(self):
        fits.append(str(self.out_dir.name))
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    # interrupted inside task 1: nothing is scored for it, and the run says so
    res = P.run_protocol(cfg, "coconut_kd", data_dir, tmp_path, device="cpu")[0]
    assert fits == ["task0", "task1"]
    method_dir = tmp_path / "coconut_kd" / "seed0"
    r0 = json.loads((method_dir / "task0" / "result.json").read_text())
    r1 = json.loads((method_dir / "task1" / "result.json").read_text())
    # memory after task 0: budget 4 over the 2 seen classes, herding order, task-0 classes only
    assert r0["memory_counts"] == {"activate_lights_none": 2, "change-language_German_none": 2}
    assert math.isnan(res["accuracy_matrix"][0][1]) and len(res["accuracy_matrix"]) == 2
    a = np.array([[np.nan if v is None else v for v in row] for row in json.loads((method_dir / "results.json").read_text())["accuracy_matrix"]])
    assert res["forgetting"] == pytest.approx(M.forgetting(a)) and res["aia"] == pytest.approx(M.average_incremental_accuracy(a, res["test_sizes"]))
    assert r1["test"]["num"] == 8 and r0["test"]["num"] == 4  # all seen classes' test items
    assert 0.0 <= res["wer"] and (method_dir / "accuracy.png").stat().st_size > 0
    # task 1 had the memory in its data and a teacher (NSPT and KD were logged)
    log = [json.loads(line) for line in (method_dir / "task1" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/nspt" in rec for rec in log) and any("train/kd" in rec for rec in log)
    assert not any("train/nspt" in rec for rec in (json.loads(x) for x in (method_dir / "task0" / "metrics.jsonl").read_text().splitlines()))
    # rerun: both tasks complete -> nothing trained, same results
    fits.clear()
    again = P.run_protocol(cfg, "coconut_kd", data_dir, tmp_path, device="cpu")[0]
    assert fits == []
    np.testing.assert_allclose(np.array(again["accuracy_matrix"], dtype=float), np.array(res["accuracy_matrix"], dtype=float))
    # changing a training parameter redoes the work
    fits.clear()
    P.run_protocol(_cfg(data_dir, "losses.kd=0.5"), "coconut_kd", data_dir, tmp_path, device="cpu")
    assert fits == ["task0", "task1"] or fits == ["task1"]


def test_interrupted_task_resumes(data_dir, tmp_path) -> None:
    cfg = _cfg(data_dir, "train.stop_after=1")
    res = P.run_protocol(cfg, "er", data_dir, tmp_path, device="cpu")
    assert res == {0: {}} and not (tmp_path / "er" / "seed0" / "task0" / "result.json").exists()
    full = P.run_protocol(_cfg(data_dir), "er", data_dir, tmp_path, device="cpu")[0]
    assert len(full["accuracy_matrix"]) == 2 and (tmp_path / "er" / "seed0" / "task1" / "result.json").is_file()
    # resumed, not restarted: one run, whose metrics continue after the interruption
    steps = [json.loads(x)["step"] for x in (tmp_path / "er" / "seed0" / "task0" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[0] == 1


def test_cli_joint_and_comparison(data_dir, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cil_cli.add_arguments(parser)
    common = ["--config", str(data_dir / "conf.yaml"), "--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--threads", "1"]
    assert cil_cli.run(parser.parse_args(common + ["--prepare-only"])) == 0
    assert "2 tasks, 4 classes" in capsys.readouterr().out
    assert cil_cli.run(parser.parse_args(common + ["--method", "joint", "epochs_per_task=1", "joint_epochs=3"])) == 0
    joint = json.loads((tmp_path / "joint" / "seed0" / "results.json").read_text())
    assert joint["num_tasks"] == 1 and joint["forgetting"] is None and joint["aia"] == joint["last"]
    assert not (tmp_path / "joint" / "seed0" / "task1").exists()
    assert cil_cli.run(parser.parse_args(common + ["--method", "ft", "epochs_per_task=1"])) == 0
    rparser = argparse.ArgumentParser()
    results_cli.add_arguments(rparser)
    capsys.readouterr()
    assert results_cli.run(rparser.parse_args(["--exp", str(tmp_path), "--out", str(tmp_path / "cmp")])) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2] == "| run | method | memory | seeds | task 0 | AIA | last | forgetting | BWT | WER |"
    assert [line.split("|")[1].strip() for line in table[4:6]] == ["ft", "joint"]
    assert "| - |" in table[5]  # joint has no forgetting
    assert "## Valid" in table
    assert all((tmp_path / "cmp" / f).is_file() for f in ("RESULTS.md", "accuracy.png", "matrix.png"))


def test_shared_first_task_until_plateau_seeds_and_run_names(data_dir, tmp_path, monkeypatch) -> None:
    """Task 0 is trained once per seed (CE only, epoch by epoch until the valid accuracy
    plateaus) and every method of that seed starts from it; ``--name`` keeps two settings of
    one method apart; a run killed between epochs resumes at the last finished epoch."""
    over = ["first_task.shared=true", "first_task.until_plateau=true", "first_task.max_epochs=4", "first_task.patience=1",
            "first_task.min_delta=1.0", "first_task.min_epochs=0"]  # min_delta 1.0: no epoch can improve -> plateau after patience + 1 epochs
    fits: list[str] = []
    real_fit = Trainer.fit

    def counting_fit(self):
        fits.append(f"{self.out_dir.parent.name}/{self.out_dir.name}")
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    # killed inside the first epoch of seed 0's shared task: nothing recorded, rerun resumes
    assert P.run_first_task(_cfg(data_dir, *over, "train.stop_after=1"), data_dir, tmp_path, seeds=[0], device="cpu") is False
    assert not (tmp_path / "task0" / "seed0" / "result.json").exists()
    fits.clear()
    out = P.run_protocol(_cfg(data_dir, *over), "er", data_dir, tmp_path, device="cpu", seeds=[0, 1])
    # per seed: 2 epochs of the shared task (plateau after patience=1), then task 1 of the run
    assert fits == ["task0/seed0", "task0/seed0", "seed0/task1", "task0/seed1", "task0/seed1", "seed1/task1"]
    hist = json.loads((tmp_path / "task0" / "seed0" / "plateau.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    shared = json.loads((tmp_path / "task0" / "seed0" / "result.json").read_text())
    for seed in (0, 1):
        res = out[seed]
        assert res["run"] == "er" and res["seed"] == seed and res["settings"]["memory"]["selection"] == "herding"
        assert res["settings"]["losses"]["nspt"] == 0.0 and res["settings"]["first_task"]["until_plateau"] is True
    assert out[0]["task0_accuracy"] == pytest.approx(shared["test"]["row"][0])
    assert (tmp_path / "er" / "seed1" / "results.json").is_file()
    # another method and another setting of the same method reuse the shared task 0 (no new task-0 training)
    fits.clear()
    ft = P.run_protocol(_cfg(data_dir, *over), "ft", data_dir, tmp_path, device="cpu")[0]
    er2 = P.run_protocol(_cfg(data_dir, *over, "memory.budget=2"), "er", data_dir, tmp_path, device="cpu", name="er_m2")[0]
    assert fits == ["seed0/task1", "seed0/task1"]
    assert ft["task0_accuracy"] == out[0]["task0_accuracy"] == er2["task0_accuracy"]
    assert er2["run"] == "er_m2" and er2["settings"]["memory"]["budget"] == 2 and ft["settings"]["memory"] is None
    assert json.loads((tmp_path / "er_m2" / "seed0" / "task0" / "result.json").read_text())["memory_counts"] == {
        "activate_lights_none": 1, "change-language_German_none": 1}


def test_plateau_rule() -> None:
    from speechunits.slu.first_task import plateaued

    h = lambda *accs: [{"valid_accuracy": a} for a in accs]  # noqa: E731
    assert not plateaued(h(0.1, 0.2), patience=2, min_delta=0.0)
    assert not plateaued(h(0.1, 0.2, 0.1, 0.3), patience=2, min_delta=0.0)
    assert plateaued(h(0.1, 0.5, 0.4, 0.5), patience=2, min_delta=0.0)
    assert plateaued(h(0.1, 0.5, 0.4, 0.504), patience=2, min_delta=0.005)
    assert not plateaued(h(0.1, 0.5, 0.4, 0.51), patience=2, min_delta=0.005)
    assert not plateaued(h(0.1, 0.5, 0.4, 0.5), patience=2, min_delta=0.0, min_epochs=5)


def test_plateau_needs_a_valid_split(data_dir) -> None:
    with pytest.raises(ConfigError, match="valid split"):
        _cfg(data_dir, "first_task.shared=true", "first_task.until_plateau=true", "eval_valid=false")
    with pytest.raises(ConfigError, match="shared"):
        _cfg(data_dir, "first_task.until_plateau=true")
