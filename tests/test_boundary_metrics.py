"""Boundary P/R/F1/R-value, one-to-one matching, shift tuning, token rate and purity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from speechunits.eval.boundaries import (
    BoundaryCounts,
    evaluate_boundaries,
    interval_boundaries,
    match_boundaries,
    match_pairs,
    r_value,
    scores_from_counts,
    segment_boundaries,
    tokens_per_second,
    tune_shift,
)
from speechunits.eval.purity import PurityAccumulator, match_segments, normalize_syllable_label


def test_exact_scores_small_case() -> None:
    pred = np.array([0.10, 0.50, 0.90])
    ref = np.array([0.12, 0.55, 1.30, 2.00])
    s = evaluate_boundaries({"u": pred}, {"u": ref})
    # hits: 0.10~0.12 and 0.50~0.55 (exactly at the 50 ms tolerance)
    assert (s.hits, s.num_pred, s.num_ref) == (2, 3, 4)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(4 / 7)
    assert s.over_segmentation == pytest.approx(-0.25)
    # by hand: r1 = sqrt(0.5^2 + 0.25^2) = 0.559017, r2 = (0.25 + 0.5 - 1)/sqrt(2) = -0.176777
    assert s.r_value == pytest.approx(1 - (0.559017 + 0.176777) / 2, abs=1e-6)
    pct = s.as_percent()
    assert pct["precision"] == pytest.approx(66.6667, abs=1e-3)
    assert pct["r_value"] == pytest.approx(63.2103, abs=1e-3)


def test_r_value_perfect_and_paper_style_numbers() -> None:
    assert r_value(1.0, 0.0) == pytest.approx(1.0)
    # P = 0.8, R = 0.6 -> OS = 0.6/0.8 - 1 = -0.25; r1 = sqrt(0.16 + 0.0625) = 0.471699;
    # r2 = (0.25 + 0.6 - 1)/sqrt(2) = -0.106066; R = 1 - (0.471699 + 0.106066)/2 = 0.711117
    assert r_value(0.6, 0.6 / 0.8 - 1) == pytest.approx(0.711117, abs=1e-6)


def test_tolerance_edge_is_inclusive() -> None:
    ref = np.array([1.0])
    assert match_boundaries(np.array([1.05]), ref, 0.05) == 1
    assert match_boundaries(np.array([0.95]), ref, 0.05) == 1
    assert match_boundaries(np.array([1.0501]), ref, 0.05) == 0
    assert match_boundaries(np.array([1.02]), ref, 0.01) == 0


def test_one_predicted_near_two_references_counts_once() -> None:
    s = evaluate_boundaries({"u": np.array([1.0])}, {"u": np.array([0.97, 1.03])})
    assert (s.hits, s.precision, s.recall) == (1, 1.0, 0.5)
    s = evaluate_boundaries({"u": np.array([0.97, 1.03])}, {"u": np.array([1.0])})
    assert (s.hits, s.precision, s.recall) == (1, 0.5, 1.0)


def test_matching_beats_nearest_neighbour_greedy() -> None:
    # pred 1.00 is equally near both refs; pairing it with 1.04 would leave 1.08 unmatched.
    assert match_boundaries(np.array([1.00, 1.08]), np.array([0.96, 1.04]), 0.05) == 2
    pairs = match_pairs(np.array([1.00, 1.08]), np.array([0.96, 1.04]), 0.05)
    assert pairs.tolist() == [[0, 0], [1, 1]]


def _exact_max_matching(pred: np.ndarray, ref: np.ndarray, tol: float) -> int:
    if len(pred) == 0 or len(ref) == 0:
        return 0
    adj = csr_matrix((np.abs(pred[:, None] - ref[None, :]) <= tol + 1e-9).astype(np.int8))
    return int(np.sum(maximum_bipartite_matching(adj, perm_type="column") >= 0))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 60), max_size=12),
    st.lists(st.integers(0, 60), max_size=12),
    st.integers(1, 6),
)
def test_sweep_matching_is_maximum(pred: list[int], ref: list[int], tol_steps: int) -> None:
    p = np.unique(np.array(pred, dtype=np.float64) * 0.01)
    r = np.unique(np.array(ref, dtype=np.float64) * 0.01)
    tol = tol_steps * 0.01
    pairs = match_pairs(p, r, tol)
    assert len(set(pairs[:, 0].tolist())) == len(pairs) == len(set(pairs[:, 1].tolist()))
    assert np.all(np.abs(p[pairs[:, 0]] - r[pairs[:, 1]]) <= tol + 1e-9)
    assert len(pairs) == _exact_max_matching(p, r, tol)


def test_corpus_level_sums_hits_not_mean_of_f1() -> None:
    pred = {"a": np.array([1.0]), "b": np.array([1.0, 2.0, 3.0])}
    ref = {"a": np.array([1.0]), "b": np.array([5.0])}
    s = evaluate_boundaries(pred, ref)
    assert s.precision == pytest.approx(1 / 4)  # mean of per-utterance precision would be 0.5
    assert s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 * 1 / (4 + 2))


def test_missing_prediction_is_an_error() -> None:
    with pytest.raises(KeyError, match="without prediction"):
        evaluate_boundaries({}, {"a": np.array([1.0])})


def test_shift_is_added_to_predictions_and_tuned() -> None:
    ref = {"a": np.array([0.5, 1.0, 1.5]), "b": np.array([0.3, 0.9])}
    pred = {k: v + 0.08 for k, v in ref.items()}
    assert evaluate_boundaries(pred, ref).hits == 0
    assert evaluate_boundaries(pred, ref, shift=-0.08).hits == 5
    assert evaluate_boundaries(pred, ref, shift=+0.08).hits == 0
    shift, scores = tune_shift(pred, ref, grid=[-0.1, -0.08, -0.06, 0.0, 0.04], tolerance=0.01)
    assert shift == pytest.approx(-0.08)
    assert scores.f1 == pytest.approx(1.0)


def test_no_predictions_gives_zero_precision_and_defined_r_value() -> None:
    s = scores_from_counts(BoundaryCounts(hits=0, num_pred=0, num_ref=4))
    assert s.precision == 0.0 and s.recall == 0.0 and s.f1 == 0.0
    assert s.over_segmentation == -1.0
    assert math.isfinite(s.r_value)


def test_segment_boundaries_dedupe_adjacent_and_keep_gaps() -> None:
    segs = np.array([[0, 10], [10, 20], [25, 30]], dtype=np.int64)
    assert segment_boundaries(segs, 50.0).tolist() == pytest.approx([0.0, 0.2, 0.4, 0.5, 0.6])
    assert interval_boundaries([(0.1, 0.3), (0.3, 0.5)]).tolist() == pytest.approx([0.1, 0.3, 0.5])
    assert segment_boundaries(np.zeros((0, 2), dtype=np.int64), 50.0).size == 0


def test_tokens_per_second_uses_total_duration() -> None:
    assert tokens_per_second(12, 3.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        tokens_per_second(3, 0.0)


def test_purity_hand_computed() -> None:
    ref = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], dtype=float)
    labels = ["b aa1", "b aa0", "d iy", "b aa"]
    pred = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [10, 11]], dtype=float)  # the last overlaps nothing
    units = [5, 5, 7, 6, 9]
    acc = PurityAccumulator()
    acc.add(ref, labels, pred, units)
    s = acc.scores()
    # co-occurrence: (b aa, 5) = 2, (d iy, 7) = 1, (b aa, 6) = 1
    assert s.num_matched == 4
    assert s.syllable_purity == pytest.approx((2 + 1) / 4)  # b aa -> 5 (2 of 3), d iy -> 7
    assert s.cluster_purity == pytest.approx((2 + 1 + 1) / 4)  # every cluster is pure
    assert (s.num_syllable_types, s.num_clusters) == (2, 3)


def test_purity_matching_is_one_to_one_max_iou() -> None:
    ref = np.array([[0.0, 1.0], [1.0, 2.0]])
    pred = np.array([[0.0, 1.9], [1.9, 2.0]])
    r, p = match_segments(ref, pred)
    # one-to-one: the long prediction takes the first syllable, the short one the second
    assert sorted(zip(r.tolist(), p.tolist())) == [(0, 0), (1, 1)]
    assert normalize_syllable_label("dh ax0") == "dh ax"


def test_purity_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        PurityAccumulator().add(np.array([[0, 1]]), ["a", "b"], np.array([[0, 1]]), [1])


def test_cli_shift_grid_and_table() -> None:
    from speechunits.errors import ConfigError
    from speechunits.config import parse_grid
    from speechunits.eval.boundaries_cli import format_table

    assert parse_grid("-0.01:0.01:0.005") == pytest.approx((-0.01, -0.005, 0.0, 0.005, 0.01))
    assert parse_grid("0,0.02") == (0.0, 0.02)
    with pytest.raises(ConfigError, match="shift-grid"):
        parse_grid("a:b", "--shift-grid")
    s = scores_from_counts(BoundaryCounts(hits=3, num_pred=4, num_ref=6))
    table = format_table({"boundaries": s.as_percent(), "utterances": 2, "missing_alignments": 1,
                          "tokens_per_second": 4.123, "ref_tokens_per_second": 5.0, "shift": -0.01,
                          "tolerance": 0.05})
    header, row = table.splitlines()[:2]
    assert header.split() == ["utts", "missing", "P", "R", "F1", "R-val", "tok/s", "ref", "tok/s", "shift"]
    assert row.split()[:5] == ["2", "1", "75.00", "50.00", "60.00"]
