"""Class-incremental metrics on hand-made accuracy matrices with known answers."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from speechunits.slu import metrics as M

NAN = float("nan")
# A[i][j]: accuracy on task j after training task i. Task 1 *improves* after task 2, which
# catches the classic off-by-one of including the last row in the forgetting maximum.
A = [
    [0.90, NAN, NAN],
    [0.95, 0.80, NAN],
    [0.50, 0.95, 0.90],
]


def test_step_accuracies_and_aia_uniform() -> None:
    steps = M.step_accuracies(A)
    assert steps == pytest.approx([0.90, (0.95 + 0.80) / 2, (0.50 + 0.95 + 0.90) / 3])
    assert M.average_incremental_accuracy(A) == pytest.approx((0.90 + 0.875 + 2.35 / 3) / 3)
    assert M.last_accuracy(A) == pytest.approx(2.35 / 3)


def test_step_accuracies_weighted_by_test_sizes() -> None:
    steps = M.step_accuracies(A, task_sizes=[100, 50, 50])
    assert steps[1] == pytest.approx((0.95 * 100 + 0.80 * 50) / 150)
    assert steps[2] == pytest.approx((0.50 * 100 + 0.95 * 50 + 0.90 * 50) / 200)


def test_backward_transfer() -> None:
    # ((A20 - A00) + (A21 - A11)) / 2 = (-0.40 + 0.15) / 2
    assert M.backward_transfer(A) == pytest.approx(-0.125)


def test_chaudhry_forgetting_indexing() -> None:
    # f_0 = max(A00, A10) - A20 = 0.95 - 0.50 = 0.45 ; f_1 = max(A11) - A21 = 0.80 - 0.95 = -0.15
    assert M.forgetting(A) == pytest.approx((0.45 - 0.15) / 2)
    # the wrong variants would give (0.45 + 0.0) / 2 (max incl. last row) or 0.30 / 3 (last task averaged)
    assert not math.isclose(M.forgetting(A), 0.225)
    assert not math.isclose(M.forgetting(A), 0.10)


def test_single_task_has_no_forgetting() -> None:
    assert M.forgetting([[0.7]]) == 0.0 and M.backward_transfer([[0.7]]) == 0.0


def test_non_square_matrix_rejected() -> None:
    with pytest.raises(ValueError, match="square"):
        M.forgetting([[0.1, 0.2]])


def test_accuracy_row() -> None:
    class_to_task = {"a": 0, "b": 0, "c": 1, "d": 2}
    refs = ["a", "b", "c", "c", "a"]
    preds = ["a", "c", "c", "x", "a"]
    row = M.accuracy_row(preds, refs, class_to_task, 3)
    assert row[0] == pytest.approx(2 / 3) and row[1] == pytest.approx(0.5) and np.isnan(row[2])


def test_intent_accuracy_and_wer() -> None:
    assert M.intent_accuracy(["a", "b"], ["a", "c"]) == 0.5
    # one substitution out of 4 reference words + one deletion out of 2
    assert M.word_error_rate(["turn on the lights", "hello there"], ["turn off the lights", "hello"]) == pytest.approx(2 / 6)


def test_results_table_and_plot(tmp_path) -> None:
    rows = {"ER": M.summarize(A), "COCONUT": {"aia": 0.5, "last": 0.25, "bwt": NAN, "forgetting": 0.1}}
    table = M.results_table(rows)
    lines = table.strip().splitlines()
    assert lines[0] == "| method | aia | last | bwt | forgetting |"
    assert lines[2].startswith("| ER | ") and "-12.50" in lines[2]
    assert lines[3] == "| COCONUT | 50.00 | 25.00 | - | 10.00 |"
    out = tmp_path / "plots" / "acc.png"
    M.plot_step_accuracies({"ER": M.step_accuracies(A)}, out, title="FSC-3")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(out.parent) if p != "acc.png"]
