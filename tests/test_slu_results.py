"""Results files of class-incremental SLU runs: NaN survives a JSON round trip as null, the
summary of stored rows, the one-seed files, and the comparison over runs and seeds (mean ±
sample std, tables, settings, figures, run order, errors)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from speechunits.errors import ConfigError, ManifestError
from speechunits.io_utils import atomic_write_json
from speechunits.slu import metrics as M
from speechunits.slu.results import (
    RESULTS_NAME,
    aggregate_runs,
    comparison,
    find_run_results,
    float_or_nan,
    json_safe,
    mean_std,
    memory_setting,
    summarize_method,
    write_method_results,
)
from speechunits.slu.tasks import split_classes

SPLIT = split_classes(["a", "b", "c", "d"], 2, name="toy-2")


def test_nan_round_trip_through_json() -> None:
    record = {"row": [0.5, math.nan], "nested": {"wer": math.nan, "pair": (1.0, math.nan)}, "n": 3}
    text = json.dumps(json_safe(record), allow_nan=False)  # no NaN token left
    back = json.loads(text)
    assert back["row"][1] is None and back["nested"]["pair"] == [1.0, None] and back["n"] == 3
    assert [float_or_nan(v) for v in back["row"]][0] == 0.5 and math.isnan(float_or_nan(back["nested"]["wer"]))


def test_summary_of_stored_rows() -> None:
    # rows as read back from task records: null above the diagonal
    rows = [[0.8, None], [0.6, 0.9]]
    last_eval = {"sizes": [3, 1], "wer": 0.25}
    res = summarize_method("er", rows, [[1.0, None]], last_eval, SPLIT)
    a = np.array([[0.8, np.nan], [0.6, 0.9]])
    assert res["benchmark"] == "toy-2" and res["num_tasks"] == 2 and res["test_sizes"] == [3, 1]
    assert res["step_accuracies"] == pytest.approx([0.8, (3 * 0.6 + 0.9) / 4])
    assert res["forgetting"] == pytest.approx(M.forgetting(a)) and res["bwt"] == pytest.approx(M.backward_transfer(a))
    assert res["wer"] == 0.25
    assert "valid_aia" not in res  # valid rows of only some tasks are not summarised
    one = summarize_method("joint", [[0.7]], [[0.5]], {"sizes": [4], "wer": 0.1}, SPLIT)
    assert math.isnan(one["bwt"]) and math.isnan(one["forgetting"]) and one["aia"] == one["last"] == pytest.approx(0.7)
    assert one["valid_aia"] == pytest.approx(0.5)
    # a task record read back on rerun stores a NaN WER (empty test set) as null
    reread = summarize_method("ft", [[0.7]], [], {"sizes": [4], "wer": None}, SPLIT)
    assert math.isnan(reread["wer"])


def test_one_seed_files(tmp_path) -> None:
    res = {**summarize_method("er", [[0.8, None], [0.6, 0.9]], [], {"sizes": [1, 1], "wer": 0.1}, SPLIT), "run": "er_m2", "seed": 3}
    write_method_results(tmp_path / "er_m2" / "seed3", res)
    assert (tmp_path / "er_m2" / "seed3" / "accuracy.png").stat().st_size > 0
    md = (tmp_path / "er_m2" / "seed3" / "RESULTS.md").read_text()
    assert md.startswith("# er_m2 on toy-2, seed 3") and "| er_m2 | 77.50 | 75.00 |" in md


# --------------------------------------------------------------------------- the comparison over seeds
SETTINGS = {
    "er": {"losses": {"nspt": 0.0, "mm": 0.0, "kd": 0.0}, "memory": {"budget": 20, "fraction": 0.01, "selection": "herding"},
           "epochs_per_task": 2, "first_task": {"shared": True}},
    "ft": {"losses": {"nspt": 0.0, "mm": 0.0, "kd": 0.0}, "memory": None, "epochs_per_task": 2, "first_task": {"shared": True}},
}
# run -> per-seed (A[0][0], A[1][0], A[1][1], valid A[0][0], wer)
SEEDS = {
    "er": [(0.90, 0.70, 0.80, 0.85, 0.20), (0.80, 0.60, 0.90, 0.75, 0.30), (0.85, 0.65, 0.70, 0.80, 0.10)],
    "ft": [(0.90, 0.10, 0.95, 0.80, 0.40), (0.88, 0.00, 0.90, 0.70, 0.50), (0.86, 0.20, 0.85, 0.90, 0.45)],
}


def _write_exp(exp, runs=SEEDS) -> None:
    for run, seeds in runs.items():
        for k, (a00, a10, a11, v00, wer) in enumerate(seeds):
            res = summarize_method(run, [[a00, None], [a10, a11]], [[v00, None], [v00 / 2, a11]], {"sizes": [2, 2], "wer": wer}, SPLIT)
            res.update(run=run, seed=k, task0_accuracy=a00, settings=SETTINGS[run], slu_f1=None)
            atomic_write_json(exp / run / f"seed{k}" / RESULTS_NAME, json_safe(res))


def _expected(run: str, f) -> tuple[float, float]:
    x = np.array([f(*s) for s in SEEDS[run]])
    return float(x.mean()), float(x.std(ddof=1))


def test_aggregate_means_and_sample_stds(tmp_path) -> None:
    _write_exp(tmp_path / "exp")
    stats = aggregate_runs([tmp_path / "exp"])
    assert list(stats) == ["ft", "er"]  # fixed method order, not alphabetical
    checks = {
        "task0_accuracy": lambda a00, a10, a11, v00, wer: a00,
        "last": lambda a00, a10, a11, v00, wer: (a10 + a11) / 2,
        "aia": lambda a00, a10, a11, v00, wer: (a00 + (a10 + a11) / 2) / 2,
        "forgetting": lambda a00, a10, a11, v00, wer: a00 - a10,
        "bwt": lambda a00, a10, a11, v00, wer: a10 - a00,
        "wer": lambda a00, a10, a11, v00, wer: wer,
        "valid_task0_accuracy": lambda a00, a10, a11, v00, wer: v00,
        "valid_aia": lambda a00, a10, a11, v00, wer: (v00 + (v00 / 2 + a11) / 2) / 2,
    }
    for run in SEEDS:
        for metric, f in checks.items():
            mean, std, n = stats[run][metric]
            assert n == 3 and (mean, std) == pytest.approx(_expected(run, f), abs=1e-12), (run, metric)
        assert stats[run]["slu_f1"][2] == 0 and math.isnan(stats[run]["slu_f1"][0])
    # a run dir and a seed dir are accepted too; one seed has no std
    assert aggregate_runs([tmp_path / "exp" / "er"])["er"]["aia"][2] == 3
    one = aggregate_runs([tmp_path / "exp" / "ft" / "seed1"])["ft"]["last"]
    assert one[0] == pytest.approx(0.45) and math.isnan(one[1]) and one[2] == 1
    assert mean_std([0.5, math.nan]) == (0.5, pytest.approx(math.nan, nan_ok=True), 1)


def test_comparison_tables_settings_and_figures(tmp_path) -> None:
    _write_exp(tmp_path / "exp")
    text = comparison([tmp_path / "exp"], tmp_path / "cmp")
    lines = text.splitlines()
    assert lines[0] == "## Test"
    assert lines[2] == "| run | method | memory | seeds | task 0 | AIA | last | forgetting | BWT | WER |"  # no SLU-F1: none measured
    rows = [line for line in lines if line.startswith("| ft |") or line.startswith("| er |")]
    assert rows[0].startswith("| ft | ft | none | 3 (0, 1, 2) | ")
    mean, std = _expected("er", lambda a00, *_: a00)
    assert rows[1].startswith(f"| er | er | 1% herding | 3 (0, 1, 2) | {100 * mean:.2f} ± {100 * std:.2f} |")
    assert "## Valid" in text and "| run | method | memory | seeds | valid task 0 | valid AIA |" in text
    md = (tmp_path / "cmp" / "RESULTS.md").read_text()
    assert md.startswith("# Class-incremental SLU: toy-2") and "mean ± sample std (ddof=1)" in md
    assert '- `er`: `{"epochs_per_task": 2' in md and '"selection": "herding"' in md
    for fig in ("accuracy.png", "matrix.png"):
        assert (tmp_path / "cmp" / fig).stat().st_size > 1000
    # one seed: no ±; SLU-F1 appears once a run has it
    _write_exp(tmp_path / "one", {"ft": SEEDS["ft"][:1]})
    res = json.loads((tmp_path / "one" / "ft" / "seed0" / RESULTS_NAME).read_text())
    atomic_write_json(tmp_path / "one" / "ft" / "seed0" / RESULTS_NAME, {**res, "slu_f1": 0.5})
    single = comparison([tmp_path / "one"])
    assert "| SLU-F1 |" in single and "±" not in single and "| 1 (0) | 90.00 |" in single and single.splitlines()[4].endswith("| 50.00 |")


def test_run_order_and_legacy_layout(tmp_path) -> None:
    for name, method, acc in (("joint", "joint", 0.9), ("zz_custom", "zz_custom", 0.5), ("coconut", "coconut", 0.7),
                              ("er_m2", "er", 0.6), ("er_kd", "er_kd", 0.6), ("er", "er", 0.6), ("ft", "ft", 0.4)):
        rows = [[acc]] if name == "joint" else [[acc, None], [acc, acc]]
        write_method_results(tmp_path / name, {**summarize_method(method, rows, [], {"sizes": [1, 1], "wer": 0.1}, SPLIT), "run": name})
    found = find_run_results([tmp_path])  # <exp>/<run>/results.json: one seed each
    assert list(found) == ["ft", "er", "er_m2", "er_kd", "coconut", "joint", "zz_custom"]
    text = comparison([tmp_path], tmp_path / "cmp")
    assert "| joint | joint | ? | 1 (?) | 90.00 | 90.00 | 90.00 | - | - |" in text  # no settings, no seed, nothing to forget
    assert (tmp_path / "cmp" / "accuracy.png").is_file() and (tmp_path / "cmp" / "matrix.png").is_file()


def test_errors(tmp_path) -> None:
    with pytest.raises(ManifestError, match=rf"{tmp_path}.*no {RESULTS_NAME} here, in seed\*/"):
        comparison([tmp_path])
    _write_exp(tmp_path / "a", {"er": SEEDS["er"][:1]})
    _write_exp(tmp_path / "b", {"er": SEEDS["er"][:1]})
    with pytest.raises(ConfigError, match="run 'er' has seed 0 more than once"):
        find_run_results([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / RESULTS_NAME).write_text("{}")
    with pytest.raises(ManifestError, match="not a slu-cil results.json"):
        find_run_results([tmp_path / "c"])
    assert memory_setting({"memory": {"budget": 200, "fraction": None, "selection": "random"}}) == "200 random"
