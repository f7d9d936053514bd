"""Results files of class-incremental SLU runs: NaN survives a JSON round trip as null, the
summary of stored rows, and the comparison's method order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from speechunits.errors import ManifestError
from speechunits.slu import metrics as M
from speechunits.slu.results import (
    RESULTS_NAME,
    comparison,
    find_method_results,
    float_or_nan,
    json_safe,
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


def test_written_results_are_found_and_ordered(tmp_path) -> None:
    for name, acc in (("joint", 0.9), ("zz_custom", 0.5), ("coconut", 0.7), ("ft", 0.4)):
        rows = [[acc]] if name == "joint" else [[acc, None], [acc, acc]]
        write_method_results(tmp_path / name, summarize_method(name, rows, [], {"sizes": [1, 1], "wer": 0.1}, SPLIT))
        assert (tmp_path / name / "RESULTS.md").is_file() and (tmp_path / name / "accuracy.png").is_file()
    found = find_method_results([tmp_path])
    assert math.isnan(found["joint"]["forgetting"])  # stored null, read back as NaN
    table = comparison([tmp_path], tmp_path / "cmp").splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["ft", "coconut", "joint", "zz_custom"]
    assert (tmp_path / "cmp" / "RESULTS.md").read_text().startswith("# Class-incremental SLU: toy-2")
    with pytest.raises(ManifestError, match=RESULTS_NAME):
        find_method_results([tmp_path / "cmp"])
