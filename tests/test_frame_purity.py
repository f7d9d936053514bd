"""Phone purity, cluster purity and PNMI (HuBERT's definitions) on hand-made label arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.eval.frame_purity import contingency, frame_purity, purity_from_counts


def test_perfect_clustering_scores_one() -> None:
    phones = ["a", "a", "b", "b", "b", "c"]
    for clusters in ([0, 0, 1, 1, 1, 2], [7, 7, 3, 3, 3, 5]):  # cluster ids are names only
        s = frame_purity(phones, clusters)
        assert (s.phone_purity, s.cluster_purity) == (1.0, 1.0) and s.pnmi == pytest.approx(1.0)
        assert (s.frames, s.phones, s.clusters) == (6, 3, 3)


def test_independent_labels_have_zero_pnmi() -> None:
    # every (phone, cluster) pair equally often: p(y, z) = p(y) p(z)
    phones = np.repeat(np.arange(4), 5 * 3)
    clusters = np.tile(np.arange(5), 4 * 3)
    s = frame_purity(phones, clusters)
    assert s.pnmi == pytest.approx(0.0, abs=1e-12)
    assert s.phone_purity == pytest.approx(1 / 4) and s.cluster_purity == pytest.approx(1 / 5)
    rng = np.random.default_rng(0)
    s = frame_purity(rng.integers(0, 10, 200_000), rng.integers(0, 20, 200_000))
    assert s.pnmi < 2e-3 and s.phone_purity == pytest.approx(0.1, abs=0.01)


def test_hand_computed_counts() -> None:
    counts = np.array([[3, 1, 0], [0, 2, 2]])  # phones x clusters, 8 frames
    s = purity_from_counts(counts)
    assert s.phone_purity == pytest.approx((3 + 2 + 2) / 8)  # each cluster's majority phone
    assert s.cluster_purity == pytest.approx((3 + 2) / 8)  # each phone's majority cluster
    h_phone = math.log(2)
    h_third = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    h_phone_given_cluster = 3 / 8 * h_third  # only cluster 1 (1 a, 2 b) is mixed
    assert s.pnmi == pytest.approx((h_phone - h_phone_given_cluster) / h_phone)
    phones = ["a"] * 4 + ["b"] * 4
    clusters = [0, 0, 0, 1, 1, 1, 2, 2]
    assert frame_purity(phones, clusters) == s
    assert contingency(phones, clusters).tolist() == counts.tolist()


def test_extremes_and_errors() -> None:
    one_cluster = frame_purity(["a", "a", "a", "b"], [0, 0, 0, 0])
    assert one_cluster.pnmi == 0.0 and one_cluster.cluster_purity == 1.0 and one_cluster.phone_purity == 0.75
    own = frame_purity(["a", "a", "b", "b"], [0, 1, 2, 3])  # a cluster per frame: phone purity 1, PNMI 1
    assert own.phone_purity == 1.0 and own.cluster_purity == 0.5 and own.pnmi == pytest.approx(1.0)
    single_phone = frame_purity(["a", "a"], [0, 1])
    assert math.isnan(single_phone.pnmi) and single_phone.as_dict()["pnmi"] is None
    with pytest.raises(ValueError, match="equal length"):
        frame_purity(["a"], [0, 1])
    with pytest.raises(ValueError, match="no frames"):
        frame_purity([], [])
