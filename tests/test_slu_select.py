"""Choosing loss settings on the valid split: the best mean valid metric wins, the test split
cannot be the metric, the choice is written as overrides with the sweep table."""

from __future__ import annotations

import argparse

import pytest

from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_json
from speechunits.slu import select_cli
from speechunits.slu.select import select_losses


def _run(root, name: str, nspt: float, valid: list[float], test: list[float]) -> None:
    for seed, (v, t) in enumerate(zip(valid, test)):
        atomic_write_json(root / name / f"seed{seed}" / "results.json", {
            "run": name, "method": "coconut", "seed": seed, "benchmark": "toy", "num_tasks": 2,
            "accuracy_matrix": [[t, None], [t, t]], "valid_accuracy_matrix": [[v, None], [v, v]],
            "aia": t, "valid_aia": v, "last": t,
            "settings": {"losses": {"nspt": nspt, "mm": 0.1, "kd": 0.0, "nspt_temperature": 0.1, "mm_temperature": 0.2,
                                    "mm_on": "new"}, "memory": {"budget": 4, "fraction": None, "selection": "herding"}}})


def test_best_valid_mean_wins_and_test_is_never_used(tmp_path) -> None:
    # "b" is best on test, "a" on the valid mean: the choice follows valid
    _run(tmp_path, "sweep-a", 0.5, valid=[0.6, 0.7], test=[0.1, 0.1])
    _run(tmp_path, "sweep-b", 0.1, valid=[0.5, 0.9 - 0.3], test=[0.9, 0.9])
    best, losses, table = select_losses([tmp_path])
    assert best == "sweep-a" and losses == {"nspt": 0.5, "mm": 0.1, "nspt_temperature": 0.1, "mm_temperature": 0.2}
    assert "| sweep-a **(chosen)** | 0.5 | 0.1 | 0.1 | 0.2 | 65.00 ± 7.07 | 2 |" in table
    with pytest.raises(ConfigError, match="valid split only"):
        select_losses([tmp_path], metric="aia")
    parser = argparse.ArgumentParser()
    select_cli.add_arguments(parser)
    assert select_cli.run(parser.parse_args(["--exp", str(tmp_path / "sweep-a"), str(tmp_path / "sweep-b"),
                                             "--out", str(tmp_path / "sweep")])) == 0
    assert (tmp_path / "sweep" / "chosen.txt").read_text().split() == [
        "losses.nspt=0.5", "losses.mm=0.1", "losses.nspt_temperature=0.1", "losses.mm_temperature=0.2"]
    assert "The test split was not used" in (tmp_path / "sweep" / "SWEEP.md").read_text()


def test_runs_without_recorded_losses_are_refused(tmp_path) -> None:
    atomic_write_json(tmp_path / "old" / "seed0" / "results.json", {"run": "old", "method": "coconut", "seed": 0,
                                                                   "accuracy_matrix": [[0.5]], "valid_aia": 0.5})
    with pytest.raises(ConfigError, match="settings.losses"):
        select_losses([tmp_path])
