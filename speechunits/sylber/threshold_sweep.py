"""Grid search of the greedy segmentation's thresholds against reference boundaries.

The Sylber segmenter has two settings, the speech norm threshold and the cosine merge
threshold. A model's own defaults come from its training statistics (the crossing point of
its speech/non-speech norm distributions and the middle of the merge range); these can sit
far from the best operating point, so a recipe may pick them on a labelled *dev* set, as it
picks the constant boundary shift. Features are computed once; every grid point only reruns
the linear-time segmentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.eval.boundaries import BoundaryScores, segment_boundaries, tune_shift
from speechunits.sylber.segment import greedy_segment_batch

METRICS = ("f1", "r_value")


@dataclass(frozen=True)
class SweepPoint:
    """Scores of one (norm, merge) threshold pair, at the shift best for it."""

    norm_threshold: float
    merge_threshold: float
    shift: float
    scores: BoundaryScores
    tokens_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return {"norm_threshold": self.norm_threshold, "merge_threshold": self.merge_threshold,
                "shift": self.shift, "tokens_per_second": self.tokens_per_second, **self.scores.as_percent()}


def sweep_thresholds(
    states: Mapping[str, np.ndarray],
    refs: Mapping[str, np.ndarray],
    norm_grid: Sequence[float],
    merge_grid: Sequence[float],
    *,
    frame_rate: float,
    seconds: float,
    shift_grid: Sequence[float] = (0.0,),
    tolerance: float = 0.05,
    reset_count: bool = False,
    matching: str = "max",
) -> list[SweepPoint]:
    """Score every threshold pair on ``states`` (utt -> (T, D) features) against ``refs`` (utt -> seconds).

    The shift is tuned (by R-value, as in ``eval-boundaries --tune-shift-on``) separately for
    every pair; ``seconds`` is the total audio duration behind the token rate; ``matching`` as in
    :func:`speechunits.eval.boundaries.match_pairs`.
    """
    ids = sorted(refs)
    missing = [u for u in ids if u not in states]
    if missing:
        raise KeyError(f"no features for {len(missing)} reference utterance(s), e.g. {missing[:3]}")
    feats = [states[u] for u in ids]
    points = []
    for nt in norm_grid:
        for mt in merge_grid:
            segs = [np.asarray(s).reshape(-1, 2) for s in greedy_segment_batch(
                feats, norm_threshold=float(nt), merge_threshold=float(mt), reset_count=reset_count)]
            pred = {u: segment_boundaries(s, frame_rate) for u, s in zip(ids, segs)}
            shift, scores = tune_shift(pred, refs, shift_grid, tolerance, matching)  # one shift: just scored there
            tokens = sum(len(s) for s in segs)
            points.append(SweepPoint(float(nt), float(mt), float(shift), scores, tokens / max(seconds, 1e-9)))
    return points


def best_point(points: Sequence[SweepPoint], metric: str = "f1") -> SweepPoint:
    """The point with the highest ``metric`` (ties: the earlier point of the grid)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not points:
        raise ValueError("empty sweep")
    return max(points, key=lambda p: (getattr(p.scores, metric), -points.index(p)))


def plot_sweep(points: Sequence[SweepPoint], out: str | Path, metric: str = "f1", title: str = "") -> None:
    """Heatmap of ``metric`` over the grid (norm threshold × merge threshold), best point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechunits.io_utils import atomic_path

    norms = sorted({p.norm_threshold for p in points})
    merges = sorted({p.merge_threshold for p in points})
    grid = np.full((len(norms), len(merges)), np.nan)
    for p in points:
        grid[norms.index(p.norm_threshold), merges.index(p.merge_threshold)] = 100 * getattr(p.scores, metric)
    best = best_point(points, metric)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(merges), 1.0 + 0.45 * len(norms)))
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(merges)), [f"{m:g}" for m in merges])
    ax.set_yticks(range(len(norms)), [f"{n:.3g}" for n in norms])
    ax.set_xlabel("merge threshold (cosine)")
    ax.set_ylabel("norm threshold")
    for i in range(len(norms)):
        for j in range(len(merges)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < np.nanmax(grid) - 10 else "black")
    ax.add_patch(plt.Rectangle((merges.index(best.merge_threshold) - 0.5, norms.index(best.norm_threshold) - 0.5),
                               1, 1, fill=False, edgecolor="red", linewidth=2))
    fig.colorbar(im, ax=ax, label=f"{metric} (%)")
    ax.set_title(title or f"{metric} over the threshold grid")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=Path(out).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


__all__ = ["METRICS", "SweepPoint", "best_point", "plot_sweep", "sweep_thresholds"]
