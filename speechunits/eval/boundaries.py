"""Boundary detection metrics: precision, recall, F1 and R-value with a tolerance.

Conventions
-----------
* Boundaries are times in **seconds**. A segmentation of ``[start, end)`` frames at
  ``frame_rate`` Hz gives the boundaries ``{start / frame_rate} ∪ {end / frame_rate}``,
  deduplicated, so two adjacent segments share one boundary and a silence gap between two
  segments gives two (:func:`segment_boundaries`). Reference intervals are treated the same
  way (:func:`interval_boundaries`).
* **One-to-one matching.** A predicted boundary ``p`` and a reference boundary ``r`` may be
  paired when ``|p - r| <= tolerance`` (inclusive, with 1e-9 s of slack for float rounding).
  Each boundary is used at most once. Two matchings (:data:`MATCHINGS`):

  - ``"max"`` (the default) finds a *maximum* matching with a two-pointer sweep over the
    sorted lists: pair the current two when they are within tolerance, otherwise drop the
    earlier one. On a line with a symmetric window this sweep is optimal (exchange
    argument: a boundary dropped by the sweep is out of reach of every boundary still to
    come on the other side, and pairing the earliest compatible pair never blocks a larger
    matching); ``tests/test_boundary_metrics.py`` checks it against an exact bipartite
    matching on random cases.
  - ``"greedy"`` is nearest-first: every (pred, ref) pair within tolerance, sorted by
    distance (ties: earlier prediction, then earlier reference), is accepted when neither
    side is taken yet. It never finds more hits than ``"max"`` and can find fewer (a
    prediction between two references takes the nearer one, which another prediction
    needed).
* **Corpus level.** Hits and counts are summed over utterances before P/R/F1/R-value are
  computed (not a mean of per-utterance scores).
* **R-value** (Räsänen et al., 2009) on the 0-1 scale, with HR = recall and over-segmentation
  OS = recall / precision - 1, computed as ``num_pred / num_ref - 1`` (identical when there
  are hits, and still defined when there are none)::

      r1 = sqrt((1 - HR)^2 + OS^2);  r2 = (-OS + HR - 1) / sqrt(2);  R = 1 - (|r1| + |r2|) / 2

  :meth:`BoundaryScores.as_percent` reports P/R/F1/R in percent.
* **Shift.** An optional constant (seconds) is *added to the predicted* boundaries before
  matching; :func:`tune_shift` picks it on a dev set by grid search maximising the R-value
  (ties: the smallest ``|shift|``).
* **Token rate.** :func:`tokens_per_second` divides tokens by the total *audio duration*
  (silence included), the convention behind Sylber's 4.27 tokens/s on LibriSpeech.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_TOLERANCE = 0.05
"""Default matching tolerance in seconds (50 ms)."""

DEFAULT_SHIFT_GRID: tuple[float, ...] = tuple(round(x, 4) for x in np.arange(-0.05, 0.05 + 1e-9, 0.005))
"""Default shift grid for :func:`tune_shift`: -50 ms .. +50 ms in 5 ms steps."""

_EPS = 1e-9


def segment_boundaries(segments: np.ndarray, frame_rate: float) -> np.ndarray:
    """Sorted unique boundary times (s) of ``[start, end)`` frame segments of shape (N, 2)."""
    seg = np.asarray(segments)
    if seg.size == 0:
        return np.zeros(0, dtype=np.float64)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"segments must have shape (N, 2), got {seg.shape}")
    return np.unique(seg.reshape(-1)).astype(np.float64) / float(frame_rate)


def interval_boundaries(intervals: Iterable[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Sorted unique boundary times (s) of ``(start, end)`` intervals in seconds."""
    arr = np.asarray(list(intervals) if not isinstance(intervals, np.ndarray) else intervals, dtype=np.float64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.float64)
    return np.unique(arr.reshape(-1))


MATCHINGS = ("max", "greedy")
"""Boundary matchings: maximum one-to-one (two-pointer sweep) or nearest-first greedy."""

MATCHING_NAMES = {"max": "maximum one-to-one matching", "greedy": "greedy nearest-first one-to-one matching"}
"""How tables and reports name each matching."""


def check_matching(matching: str) -> str:
    """``matching`` if it is one of :data:`MATCHINGS`, else ValueError."""
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    return matching


def _greedy_pairs(p: np.ndarray, r: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """Nearest-first greedy matching of sorted ``p`` and ``r`` (pairs within ``tol``)."""
    lo = np.searchsorted(r, p - tol, side="left")
    hi = np.searchsorted(r, p + tol, side="right")
    # distances rounded to 1 ns so that float noise does not break ties between equal distances
    cand = sorted((round(abs(p[i] - r[j]), 9), i, j) for i in range(len(p)) for j in range(lo[i], hi[i]))
    used_p: set[int] = set()
    used_r: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, i, j in cand:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def match_pairs(
    pred: np.ndarray, ref: np.ndarray, tolerance: float = DEFAULT_TOLERANCE, matching: str = "max"
) -> np.ndarray:
    """One-to-one matching of boundary times; returns (K, 2) [pred_idx, ref_idx] into the *sorted*
    arrays, by increasing pred_idx. ``matching``: ``"max"`` or ``"greedy"`` (module docstring)."""
    p = np.sort(np.asarray(pred, dtype=np.float64))
    r = np.sort(np.asarray(ref, dtype=np.float64))
    tol = tolerance + _EPS
    if check_matching(matching) == "greedy":
        return np.asarray(_greedy_pairs(p, r, tol), dtype=np.int64).reshape(-1, 2)
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < len(p) and j < len(r):
        if abs(p[i] - r[j]) <= tol:
            pairs.append((i, j))
            i += 1
            j += 1
        elif p[i] < r[j]:
            i += 1
        else:
            j += 1
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def match_boundaries(
    pred: np.ndarray, ref: np.ndarray, tolerance: float = DEFAULT_TOLERANCE, matching: str = "max"
) -> int:
    """Number of hits of the one-to-one matching (see :func:`match_pairs`)."""
    return int(len(match_pairs(pred, ref, tolerance, matching)))


@dataclass(frozen=True)
class BoundaryCounts:
    """Hits, predicted and reference boundary counts; add them up over utterances."""

    hits: int = 0
    num_pred: int = 0
    num_ref: int = 0

    def __add__(self, other: "BoundaryCounts") -> "BoundaryCounts":
        return BoundaryCounts(self.hits + other.hits, self.num_pred + other.num_pred, self.num_ref + other.num_ref)


@dataclass(frozen=True)
class BoundaryScores:
    """Corpus-level boundary scores on the 0-1 scale (NaN where undefined)."""

    precision: float
    recall: float
    f1: float
    over_segmentation: float
    r_value: float
    hits: int
    num_pred: int
    num_ref: int

    def as_percent(self) -> dict[str, float]:
        """P/R/F1/R-value in percent and OS as a ratio, plus the raw counts."""
        return {
            "precision": 100.0 * self.precision,
            "recall": 100.0 * self.recall,
            "f1": 100.0 * self.f1,
            "r_value": 100.0 * self.r_value,
            "over_segmentation": self.over_segmentation,
            "hits": self.hits,
            "num_pred": self.num_pred,
            "num_ref": self.num_ref,
        }


def r_value(recall: float, over_segmentation: float) -> float:
    """Räsänen et al. (2009) R-value from hit rate (= recall) and over-segmentation, 0-1 scale."""
    r1 = math.sqrt((1.0 - recall) ** 2 + over_segmentation**2)
    r2 = (-over_segmentation + recall - 1.0) / math.sqrt(2.0)
    return 1.0 - (abs(r1) + abs(r2)) / 2.0


def scores_from_counts(counts: BoundaryCounts) -> BoundaryScores:
    """Precision, recall, F1, OS and R-value from summed counts."""
    h, npred, nref = counts.hits, counts.num_pred, counts.num_ref
    precision = h / npred if npred else float("nan") if nref == 0 else 0.0
    recall = h / nref if nref else float("nan")
    f1 = 2 * h / (npred + nref) if npred + nref else float("nan")
    os_ = npred / nref - 1.0 if nref else float("nan")
    rval = r_value(recall, os_) if nref else float("nan")
    return BoundaryScores(precision, recall, f1, os_, rval, h, npred, nref)


def utterance_counts(
    pred: np.ndarray, ref: np.ndarray, tolerance: float = DEFAULT_TOLERANCE, shift: float = 0.0,
    matching: str = "max",
) -> BoundaryCounts:
    """Counts for one utterance; ``shift`` seconds are added to the predicted boundaries."""
    p = np.asarray(pred, dtype=np.float64) + shift
    r = np.asarray(ref, dtype=np.float64)
    return BoundaryCounts(match_boundaries(p, r, tolerance, matching), len(p), len(r))


def evaluate_boundaries(
    pred_by_utt: Mapping[str, np.ndarray],
    ref_by_utt: Mapping[str, np.ndarray],
    tolerance: float = DEFAULT_TOLERANCE,
    shift: float = 0.0,
    matching: str = "max",
) -> BoundaryScores:
    """Corpus-level scores over the utterances of ``ref_by_utt`` (boundary times in seconds).

    Every reference utterance must have a prediction (an empty array is a valid one);
    predictions without a reference are an error too, so nothing is dropped silently.
    """
    missing = sorted(set(ref_by_utt) - set(pred_by_utt))
    extra = sorted(set(pred_by_utt) - set(ref_by_utt))
    if missing or extra:
        raise KeyError(
            f"prediction/reference utterance ids differ: {len(missing)} without prediction "
            f"(e.g. {missing[:3]}), {len(extra)} without reference (e.g. {extra[:3]})"
        )
    check_matching(matching)
    total = BoundaryCounts()
    for utt, ref in ref_by_utt.items():
        total = total + utterance_counts(pred_by_utt[utt], ref, tolerance, shift, matching)
    return scores_from_counts(total)


def tune_shift(
    pred_by_utt: Mapping[str, np.ndarray],
    ref_by_utt: Mapping[str, np.ndarray],
    grid: Sequence[float] = DEFAULT_SHIFT_GRID,
    tolerance: float = DEFAULT_TOLERANCE,
    matching: str = "max",
) -> tuple[float, BoundaryScores]:
    """Grid-search the constant shift (s, added to predictions) maximising the R-value
    (scored with ``matching``)."""
    if len(grid) == 0:
        raise ValueError("shift grid is empty")
    best: tuple[float, BoundaryScores] | None = None
    for shift in sorted(grid, key=lambda s: (abs(s), s)):
        scores = evaluate_boundaries(pred_by_utt, ref_by_utt, tolerance, float(shift), matching)
        if best is None or scores.r_value > best[1].r_value + 1e-12:
            best = (float(shift), scores)
    assert best is not None
    return best


def tokens_per_second(num_tokens: int, total_seconds: float) -> float:
    """Token rate: tokens divided by total audio duration in seconds (silence included)."""
    if total_seconds <= 0:
        raise ValueError(f"total duration must be positive, got {total_seconds}")
    return num_tokens / total_seconds
