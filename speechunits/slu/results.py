"""Results of class-incremental SLU runs: one method's summary files, and the comparison
over methods (``speechunits slu-results``).

After its last task a method's accuracy rows become a square matrix ``A[i][j]`` (NaN above
the diagonal), summarised with :mod:`speechunits.slu.metrics` into
``<method>/results.json`` (matrix, step accuracies, AIA, last, BWT, forgetting, WER; the
same for the valid split when it was scored), ``RESULTS.md`` and ``accuracy.png``. JSON has
no NaN, so NaN is written as ``null`` (:func:`json_safe`) and read back as NaN
(:func:`float_or_nan`); the comparison reads only these files, so it works on methods run
separately, on other machines or at other times.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import ManifestError
from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.slu import metrics as M
from speechunits.slu.tasks import ClassIncrementalSplit

PathLike = str | os.PathLike[str]

RESULTS_NAME = "results.json"
TABLE_COLUMNS = ("aia", "last", "forgetting", "bwt", "wer")
METHOD_ORDER = ("ft", "er", "er_kd", "coconut", "coconut_kd", "joint")


def json_safe(x: Any) -> Any:
    """``x`` with every NaN float (in nested dicts, lists, tuples) replaced by ``None``."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def float_or_nan(x: Any) -> float:
    """A stored number as a float; ``None`` (a NaN written by :func:`json_safe`) is NaN."""
    return math.nan if x is None else float(x)


def _square(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Accuracy rows (row ``i``: after task ``i``) as a (T, T) matrix, NaN above the diagonal."""
    t = len(rows)
    a = np.full((t, t), np.nan)
    for i, row in enumerate(rows):
        a[i, : i + 1] = [float_or_nan(v) for v in list(row)[: i + 1]]
    return a


def summarize_method(name: str, rows: Sequence[Sequence[float]], valid_rows: Sequence[Sequence[float]],
                     last_eval: Mapping[str, Any], split: ClassIncrementalSplit) -> dict[str, Any]:
    """results.json content: matrix, metrics (with metrics.py), WER after the last task;
    ``benchmark`` is the name of the experiment's ``split`` (also for the joint run)."""
    a = _square(rows)
    sizes = list(last_eval.get("sizes") or [1] * a.shape[0])
    summary = M.summarize(a, sizes)
    if a.shape[0] < 2:  # joint: one task, nothing to forget
        summary["bwt"] = summary["forgetting"] = math.nan
    out: dict[str, Any] = {
        "method": name,
        "benchmark": split.name,
        "num_tasks": a.shape[0],
        "accuracy_matrix": a.tolist(),
        "test_sizes": sizes,
        "step_accuracies": M.step_accuracies(a, sizes),
        **summary,
        "wer": float_or_nan(last_eval.get("wer")),
    }
    if valid_rows and len(valid_rows) == len(rows):
        va = _square(valid_rows)
        out["valid_accuracy_matrix"] = va.tolist()
        out["valid_step_accuracies"] = M.step_accuracies(va)
        out["valid_aia"] = M.average_incremental_accuracy(va)
    return out


def write_method_results(method_dir: Path, results: Mapping[str, Any]) -> None:
    """``results.json``, ``RESULTS.md`` (one-row table) and ``accuracy.png`` of one method in ``method_dir``."""
    atomic_write_json(method_dir / RESULTS_NAME, json_safe(dict(results)))
    table = M.results_table({results["method"]: results}, columns=TABLE_COLUMNS)
    atomic_write_text(method_dir / "RESULTS.md", f"# {results['method']} on {results['benchmark']}\n\n{table}")
    M.plot_step_accuracies({results["method"]: results["step_accuracies"]}, method_dir / "accuracy.png", title=str(results["benchmark"]))


def find_method_results(paths: Sequence[PathLike]) -> dict[str, dict[str, Any]]:
    """``results.json`` of each path (a method dir, or an experiment dir holding method dirs)."""
    found: dict[str, dict[str, Any]] = {}
    for p in map(Path, paths):
        files = [p / RESULTS_NAME] if (p / RESULTS_NAME).is_file() else sorted(p.glob(f"*/{RESULTS_NAME}"))
        if not files:
            raise ManifestError(p, f"no {RESULTS_NAME} here or in its subdirectories (run speechunits slu-cil first)")
        for f in files:
            res = json.loads(f.read_text(encoding="utf-8"))
            name = str(res.get("method", f.parent.name))
            key = name if name not in found else f"{name} ({f.parent})"
            found[key] = {k: (float_or_nan(v) if k in TABLE_COLUMNS else v) for k, v in res.items()}
    return found


def comparison(paths: Sequence[PathLike], out_dir: PathLike | None = None) -> str:
    """Markdown table over methods (known methods in a fixed order); with ``out_dir`` also
    writes ``RESULTS.md`` and ``accuracy.png`` (accuracy on seen classes after each task)."""
    found = find_method_results(paths)
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    ordered = dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0].split(" ")[0], len(rank)), kv[0])))
    table = M.results_table(ordered, columns=TABLE_COLUMNS)
    bench = {str(r.get("benchmark")) for r in ordered.values()}
    if out_dir is not None:
        out = Path(out_dir)
        note = ("Columns: average incremental accuracy (AIA), accuracy on all classes after the last task (last), "
                "Chaudhry forgetting, backward transfer (BWT), WER of the transcript after the last task; all in %.\n")
        atomic_write_text(out / "RESULTS.md", f"# Class-incremental SLU: {', '.join(sorted(bench))}\n\n{table}\n{note}")
        curves = {k: v["step_accuracies"] for k, v in ordered.items() if len(v.get("step_accuracies", [])) > 1}
        if curves:
            M.plot_step_accuracies(curves, out / "accuracy.png", title=", ".join(sorted(bench)))
    return table
