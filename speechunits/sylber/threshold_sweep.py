"""Grid search of the greedy segmentation's thresholds against reference boundaries.

The Sylber segmenter has two settings, the speech norm threshold and the cosine merge
threshold. A model's own defaults come from its training statistics (the crossing point of
its speech/non-speech norm distributions and the middle of the merge range); these can sit
far from the best operating point, so a recipe may pick them on a labelled *dev* set, as it
picks the constant boundary shift. Features are computed once; every grid point only reruns
the linear-time segmentation.

**Grid extension** (:func:`extend_sweep`). A best point on the edge of the grid says the
optimum may lie beyond it (the best norm threshold of a trained model was seen on the lowest
row). So while the best pair lies on an edge that can still grow (norm thresholds stay
``> 0``, merge thresholds in ``[0, 1)``, as the command accepts them), the grid grows by one
step beyond that edge (the step between the two outermost values there) and only the new
points are swept, at most ``max_extensions`` times. The grid stays a rectangle: a new norm
row is swept at every merge value so far, a new merge column at every norm value so far.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class GridExtension:
    """One step the grid grew by: ``axis`` (``norm_threshold`` or ``merge_threshold``), ``side``
    (``low``/``high``), the new ``value``, the ``points`` swept for it, and the best point before."""

    axis: str
    side: str
    value: float
    points: int
    best_before: SweepPoint

    def as_dict(self) -> dict[str, Any]:
        before = self.best_before
        return {"axis": self.axis, "side": self.side, "value": self.value, "points": self.points,
                "best_before": {"norm_threshold": before.norm_threshold, "merge_threshold": before.merge_threshold,
                                "f1": 100.0 * before.scores.f1, "r_value": 100.0 * before.scores.r_value}}


MAX_EXTENSIONS = 4
"""Default bound on how many times :func:`extend_sweep` grows the grid."""

_ALLOWED: dict[str, Callable[[float], bool]] = {
    "norm_threshold": lambda v: v > 0.0,
    "merge_threshold": lambda v: 0.0 <= v < 1.0,
}


def _edge_step(values: Sequence[float], best: float, axis: str) -> tuple[str, float] | None:
    """(side, new value) one step beyond the edge ``best`` lies on, when that value is allowed."""
    if len(values) < 2:
        return None
    if best == values[0]:
        side, new = "low", values[0] - (values[1] - values[0])
    elif best == values[-1]:
        side, new = "high", values[-1] + (values[-1] - values[-2])
    else:
        return None
    new = round(new, 6)
    return (side, new) if _ALLOWED[axis](new) and new not in values else None


def extend_sweep(
    points: Sequence[SweepPoint],
    norm_grid: Sequence[float],
    merge_grid: Sequence[float],
    sweep: Callable[[Sequence[float], Sequence[float]], list[SweepPoint]],
    metric: str = "f1",
    max_extensions: int = MAX_EXTENSIONS,
) -> tuple[list[SweepPoint], list[GridExtension]]:
    """Grow the grid past the edge the best point lies on (see the module docstring).

    ``points`` are the sweep of ``norm_grid`` x ``merge_grid``; ``sweep(norms, merges)`` scores
    new pairs (e.g. :func:`sweep_thresholds` with its other arguments bound). Returns all
    points (the new ones appended) and the extensions made, in order. The norm axis is grown
    first when the best point sits on a corner; each step counts once towards ``max_extensions``.
    """
    if max_extensions < 0:
        raise ValueError(f"max_extensions must be >= 0, got {max_extensions}")
    points = list(points)
    axes = {"norm_threshold": sorted(set(map(float, norm_grid))),
            "merge_threshold": sorted(set(map(float, merge_grid)))}
    extensions: list[GridExtension] = []
    while len(extensions) < max_extensions:
        best = best_point(points, metric)
        for axis, values in axes.items():
            step = _edge_step(values, getattr(best, axis), axis)
            if step is not None:
                break
        else:
            break
        side, value = step
        if axis == "norm_threshold":
            new = sweep([value], axes["merge_threshold"])
        else:
            new = sweep(axes["norm_threshold"], [value])
        values.insert(0 if side == "low" else len(values), value)
        points += new
        extensions.append(GridExtension(axis, side, value, len(new), best))
    return points, extensions


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


__all__ = ["MAX_EXTENSIONS", "METRICS", "GridExtension", "SweepPoint", "best_point", "extend_sweep", "plot_sweep",
           "sweep_thresholds"]
