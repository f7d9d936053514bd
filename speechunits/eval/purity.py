"""Syllable purity and cluster purity of quantized syllable tokens against reference syllables.

Matching follows the SD-HuBERT/Sylber evaluation: per utterance, reference syllables and
predicted segments are paired **one-to-one** by the assignment that maximises the total
temporal IoU (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``). Unlike that
script, pairs that do not overlap at all are dropped (a forced pairing of disjoint spans says
nothing about either). Reference labels are normalised by removing stress digits
(``"b ah1"`` -> ``"b ah"``), as the reference does.

From the co-occurrence counts ``C[syllable, cluster]`` over all matched pairs (total ``N``):

* **syllable purity** = ``sum_s max_c C[s, c] / N``: for each syllable type, the share of its
  tokens that fall into its most frequent cluster, weighted by the syllable's count;
* **cluster purity** = ``sum_c max_s C[s, c] / N``: for each cluster, the share of its members
  that carry its majority syllable label, weighted by the cluster's size.

Note: the public SD-HuBERT script (``evaluate_purity.py``, reused by Sylber) computes these two
sums but prints them under each other's name (its "cluster purity" is the first sum above).
We name them by what they measure, as stated here; both values are always reported together.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_STRESS = re.compile(r"[0-3]")


def normalize_syllable_label(label: str) -> str:
    """Drop stress digits 0-3 from a syllable label, as the SD-HuBERT evaluation does."""
    return _STRESS.sub("", label).strip()


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of two sets of [start, end) intervals; 0 where disjoint."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    union = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return np.where(inter > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_segments(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one max-IoU pairing; returns (ref_idx, pred_idx) of the overlapping pairs."""
    iou = temporal_iou(ref, pred)
    if iou.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    r_idx, p_idx = linear_sum_assignment(iou, maximize=True)
    keep = iou[r_idx, p_idx] > 0
    return r_idx[keep].astype(np.int64), p_idx[keep].astype(np.int64)


@dataclass(frozen=True)
class PurityScores:
    """Purities on the 0-1 scale and the counts behind them."""

    syllable_purity: float
    cluster_purity: float
    num_matched: int
    num_syllable_types: int
    num_clusters: int


@dataclass
class PurityAccumulator:
    """Accumulates syllable/cluster co-occurrences utterance by utterance."""

    cooccurrence: Counter = field(default_factory=Counter)

    def add(
        self,
        ref_intervals: np.ndarray,
        ref_labels: Sequence[str],
        pred_intervals: np.ndarray,
        pred_units: Sequence[int] | np.ndarray,
    ) -> None:
        """Add one utterance: reference (M, 2) intervals + labels, predicted (N, 2) + unit ids.

        Both interval arrays must be in the same time unit (seconds, or frames of one rate).
        """
        if len(ref_labels) != len(np.asarray(ref_intervals).reshape(-1, 2)):
            raise ValueError(f"{len(ref_labels)} reference labels for {len(ref_intervals)} intervals")
        if len(pred_units) != len(np.asarray(pred_intervals).reshape(-1, 2)):
            raise ValueError(f"{len(pred_units)} unit ids for {len(pred_intervals)} predicted segments")
        r_idx, p_idx = match_segments(ref_intervals, pred_intervals)
        for r, p in zip(r_idx, p_idx):
            self.cooccurrence[(normalize_syllable_label(ref_labels[r]), int(pred_units[p]))] += 1

    def scores(self) -> PurityScores:
        """Syllable and cluster purity over everything added so far (NaN when nothing matched)."""
        total = sum(self.cooccurrence.values())
        best_per_syllable: dict[str, int] = {}
        best_per_cluster: dict[int, int] = {}
        for (syl, unit), n in self.cooccurrence.items():
            best_per_syllable[syl] = max(best_per_syllable.get(syl, 0), n)
            best_per_cluster[unit] = max(best_per_cluster.get(unit, 0), n)
        nan = float("nan")
        return PurityScores(
            syllable_purity=sum(best_per_syllable.values()) / total if total else nan,
            cluster_purity=sum(best_per_cluster.values()) / total if total else nan,
            num_matched=total,
            num_syllable_types=len(best_per_syllable),
            num_clusters=len(best_per_cluster),
        )
