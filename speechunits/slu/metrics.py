"""Class-incremental metrics, WER, results table and accuracy plot.

``A[i][j]`` = accuracy on task ``j``'s test classes after training task ``i`` (NaN or
ignored for ``j > i``). With ``T`` tasks:

* step accuracy ``acc_i``: accuracy on all classes seen after task ``i`` = the mean of
  ``A[i][0..i]`` weighted by the test sizes of the tasks (uniform without sizes);
* average incremental accuracy ``AIA = mean_i acc_i``; last accuracy ``acc_{T-1}``;
* backward transfer ``BWT = 1/(T-1) sum_{j<T-1} (A[T-1][j] - A[j][j])`` (Lopez-Paz & Ranzato);
* forgetting (Chaudhry et al. 2018) ``F = 1/(T-1) sum_{j<T-1} f_j`` with
  ``f_j = max_{l in [j, T-2]} A[l][j] - A[T-1][j]``: the maximum is over the tasks
  *before the last*, and the last task itself is not averaged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from speechunits.io_utils import atomic_path

PathLike = str | os.PathLike[str]


def _matrix(acc: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square (T, T), got shape {a.shape}")
    return a


def step_accuracies(acc: Sequence[Sequence[float]] | np.ndarray, task_sizes: Sequence[int] | None = None) -> list[float]:
    """Accuracy on all seen classes after each task (weighted by test sizes when given)."""
    a = _matrix(acc)
    sizes = np.ones(a.shape[0]) if task_sizes is None else np.asarray(task_sizes, dtype=np.float64)
    return [float(np.average(a[i, : i + 1], weights=sizes[: i + 1])) for i in range(a.shape[0])]


def average_incremental_accuracy(acc: Sequence[Sequence[float]] | np.ndarray, task_sizes: Sequence[int] | None = None) -> float:
    return float(np.mean(step_accuracies(acc, task_sizes)))


def last_accuracy(acc: Sequence[Sequence[float]] | np.ndarray, task_sizes: Sequence[int] | None = None) -> float:
    return step_accuracies(acc, task_sizes)[-1]


def backward_transfer(acc: Sequence[Sequence[float]] | np.ndarray) -> float:
    a = _matrix(acc)
    t = a.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([a[t - 1, j] - a[j, j] for j in range(t - 1)]))


def forgetting(acc: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Chaudhry average forgetting (see module doc)."""
    a = _matrix(acc)
    t = a.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([a[j : t - 1, j].max() - a[t - 1, j] for j in range(t - 1)]))


def accuracy_row(
    predictions: Sequence[str], references: Sequence[str], class_to_task: Mapping[str, int], num_tasks: int
) -> list[float]:
    """One row of ``A``: exact-match accuracy per task of the reference label (NaN if a task has no test item)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    correct = np.zeros(num_tasks)
    total = np.zeros(num_tasks)
    for pred, ref in zip(predictions, references):
        t = class_to_task[ref]
        total[t] += 1
        correct[t] += pred == ref
    with np.errstate(invalid="ignore", divide="ignore"):
        return list(np.where(total > 0, correct / np.maximum(total, 1), np.nan))


def intent_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need equal, non-empty lists; got {len(predictions)} and {len(references)}")
    return float(np.mean([p == r for p, r in zip(predictions, references)]))


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER with jiwer (empty hypotheses allowed; empty references dropped)."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        raise ValueError("WER needs at least one non-empty reference")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def summarize(acc: Sequence[Sequence[float]] | np.ndarray, task_sizes: Sequence[int] | None = None) -> dict[str, float]:
    return {
        "aia": average_incremental_accuracy(acc, task_sizes),
        "last": last_accuracy(acc, task_sizes),
        "bwt": backward_transfer(acc),
        "forgetting": forgetting(acc),
    }


def results_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None, percent: bool = True) -> str:
    """Markdown table: one row per method, one column per metric (values x100 when ``percent``)."""
    if not rows:
        raise ValueError("results_table needs at least one row")
    cols = list(columns) if columns else list(next(iter(rows.values())))
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, metrics in rows.items():
        cells = []
        for c in cols:
            v = metrics.get(c)
            cells.append("-" if v is None or np.isnan(v) else f"{v * (100 if percent else 1):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_step_accuracies(curves: Mapping[str, Sequence[float]], path: PathLike, title: str = "") -> None:
    """Accuracy on seen classes after each task, one line per method; saved atomically (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], marker="o", label=name)
    ax.set_xlabel("task")
    ax.set_ylabel("accuracy on seen classes (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=os.path.splitext(str(path))[1].lstrip(".") or "png")
    plt.close(fig)
