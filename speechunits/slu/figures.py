"""Figures of the comparison over runs and seeds (``speechunits slu-results``).

``accuracy.png``: accuracy on the classes seen so far after each task, mean over seeds with
sample-std error bars, one line per run (a one-task run, ``joint``, is a dashed horizontal
line: its single value is the upper bound). ``matrix.png``: the accuracy matrix ``A[i][j]``
(after task ``i``, on task ``j``'s classes), mean over seeds, one annotated heatmap per run.
Matplotlib with the Agg backend; files are saved atomically.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from speechunits.io_utils import atomic_path

PathLike = str | os.PathLike[str]
Runs = Mapping[str, Sequence[Mapping[str, Any]]]  # run -> results.json of each seed


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=os.path.splitext(str(path))[1].lstrip(".") or "png", dpi=120)


def _stack(rows: Sequence[Sequence[Any]]) -> np.ndarray:
    """Per-seed vectors/matrices (None = NaN) of one shape, stacked on axis 0."""
    return np.array([[np.nan if v is None else float(v) for v in np.ravel(np.array(r, dtype=object))] for r in rows])


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (without a warning) where a column has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def plot_accuracy_curves(runs: Runs, path: PathLike, title: str = "") -> None:
    """Mean (± sample std over seeds) accuracy on seen classes after each task, per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    longest = max(len(seeds[0].get("step_accuracies") or []) for seeds in runs.values())
    for run, seeds in runs.items():
        curves = [r.get("step_accuracies") or [] for r in seeds]
        if not curves[0] or any(len(c) != len(curves[0]) for c in curves):
            continue
        y = 100 * _stack(curves)
        mean = _nanmean(y)
        std = np.nanstd(y, axis=0, ddof=1) if len(seeds) > 1 else np.zeros_like(mean)
        label = f"{run} (n={len(seeds)})"
        if len(mean) == 1 and longest > 1:
            line = ax.axhline(mean[0], linestyle="--", label=label)
            if len(seeds) > 1:
                ax.axhspan(mean[0] - std[0], mean[0] + std[0], color=line.get_color(), alpha=0.15)
        else:
            ax.errorbar(range(len(mean)), mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xlabel("after task")
    ax.set_ylabel("accuracy on seen classes (%)")
    if longest > 0:
        ax.set_xticks(range(longest))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_accuracy_matrices(runs: Runs, path: PathLike) -> None:
    """One annotated heatmap of the mean accuracy matrix (%) per run, in a grid."""
    plt = _pyplot()
    n = len(runs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax, (run, seeds) in zip(axes.flat, runs.items()):
        mats = [r["accuracy_matrix"] for r in seeds]
        t = len(mats[0])
        a = 100 * _nanmean(_stack(mats)).reshape(t, t) if all(len(m) == t for m in mats) else np.full((t, t), np.nan)
        ax.imshow(np.ma.masked_invalid(a), vmin=0, vmax=100, cmap="viridis")
        for i in range(t):
            for j in range(t):
                if not math.isnan(a[i, j]):
                    ax.text(j, i, f"{a[i, j]:.1f}", ha="center", va="center", fontsize=8, color="white" if a[i, j] < 60 else "black")
        ax.set_title(f"{run} (n={len(seeds)})", fontsize=9)
        ax.set_xlabel("task j (classes)")
        ax.set_ylabel("after task i")
        ax.set_xticks(range(t))
        ax.set_yticks(range(t))
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("accuracy A[i][j] (%), mean over seeds", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
