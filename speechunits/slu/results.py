"""Results of class-incremental SLU runs: one run's summary files at one seed, and the
comparison over runs and seeds (``speechunits slu-results``).

After its last task a run's accuracy rows become a square matrix ``A[i][j]`` (NaN above
the diagonal), summarised with :mod:`speechunits.slu.metrics` into ``results.json`` of its
seed directory ``<exp>/<run>/seed<k>/`` (matrix, step accuracies, AIA, last, BWT,
forgetting, WER; the same for the valid split when it was scored), ``RESULTS.md`` and
``accuracy.png``. JSON has no NaN, so NaN is written as ``null`` (:func:`json_safe`) and
read back as NaN (:func:`float_or_nan`).

The comparison reads only these files (so it works on runs made separately, on other
machines or at other times): :func:`find_run_results` groups them by run name,
:func:`aggregate_runs` gives mean, sample std (ddof=1) and number of seeds of each metric,
and :func:`comparison` writes the tables and figures (:mod:`speechunits.slu.figures`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import ConfigError, ManifestError
from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.slu import metrics as M
from speechunits.slu.tasks import ClassIncrementalSplit

PathLike = str | os.PathLike[str]

RESULTS_NAME = "results.json"
TABLE_COLUMNS = ("aia", "last", "forgetting", "bwt", "wer")  # the one-seed table of slu-cil
METHOD_ORDER = ("ft", "er", "er_kd", "coconut", "coconut_kd", "joint")
# metric key -> column title of the comparison over seeds
TEST_METRICS = {"task0_accuracy": "task 0", "aia": "AIA", "last": "last", "forgetting": "forgetting", "bwt": "BWT",
                "wer": "WER", "slu_f1": "SLU-F1"}
VALID_METRICS = {"valid_task0_accuracy": "valid task 0", "valid_aia": "valid AIA", "valid_slu_f1": "valid SLU-F1"}
OPTIONAL_METRICS = ("slu_f1", "valid_slu_f1", "valid_task0_accuracy")  # a column only when some run has a value
Stat = tuple[float, float, int]  # (mean, sample std (NaN for one seed), number of seeds with a value)


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
    """``results.json``, ``RESULTS.md`` (one-row table) and ``accuracy.png`` of one run at one
    seed in ``method_dir`` (its seed directory)."""
    atomic_write_json(method_dir / RESULTS_NAME, json_safe(dict(results)))
    name = str(results.get("run") or results["method"])
    seed = f", seed {results['seed']}" if results.get("seed") is not None else ""
    table = M.results_table({name: results}, columns=TABLE_COLUMNS)
    atomic_write_text(method_dir / "RESULTS.md", f"# {name} on {results['benchmark']}{seed}\n\n{table}")
    M.plot_step_accuracies({name: results["step_accuracies"]}, method_dir / "accuracy.png", title=f"{results['benchmark']}{seed}")


# --------------------------------------------------------------------------- finding runs and seeds
_SEED_DIR = re.compile(r"seed(\d+)$")


def _result_files(p: Path) -> list[Path]:
    """results.json files of a seed dir, a run dir (``seed*/``), an experiment dir
    (``*/seed*/``) or an experiment of the one-seed layout (``*/results.json``)."""
    for pattern in (RESULTS_NAME, f"seed*/{RESULTS_NAME}", f"*/seed*/{RESULTS_NAME}", f"*/{RESULTS_NAME}"):
        files = sorted(p.glob(pattern))
        if files:
            return files
    return []


def _read_result(f: Path) -> dict[str, Any]:
    try:
        res = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f, f"unreadable results file: {err}") from err
    if not isinstance(res, dict) or "method" not in res or "accuracy_matrix" not in res:
        raise ManifestError(f, "not a slu-cil results.json (no method or accuracy_matrix)")
    seed_dir = _SEED_DIR.match(f.parent.name)
    if res.get("seed") is None and seed_dir:
        res["seed"] = int(seed_dir.group(1))
    if not res.get("run"):
        res["run"] = f.parent.parent.name if seed_dir else str(res["method"])
    res["path"] = str(f)
    return res


def find_run_results(paths: Sequence[PathLike]) -> dict[str, list[dict[str, Any]]]:
    """Run name -> its results.json contents (one per seed, by seed), from experiment, run or
    seed directories. Raises ManifestError when a path holds none, ConfigError when a run has
    the same seed twice."""
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[Path] = set()
    for p in map(Path, paths):
        files = _result_files(p)
        if not files:
            raise ManifestError(p, f"no {RESULTS_NAME} here, in seed*/, */seed*/ or */ (run speechunits slu-cil first)")
        for f in files:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                res = _read_result(f)
                found.setdefault(res["run"], []).append(res)
    for run, seeds in found.items():
        keys = [r.get("seed") for r in seeds]
        dup = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if dup:
            files = [r["path"] for r in seeds if r.get("seed") in dup]
            raise ConfigError(None, f"run {run!r} has seed {dup[0]} more than once: {', '.join(files)}")
        seeds.sort(key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}

    def order(run: str) -> tuple[int, bool, str]:
        method = str(found[run][0]["method"])
        return (rank.get(method, len(rank)), run != method, run if method in rank else f"{method}/{run}")

    return {run: found[run] for run in sorted(found, key=order)}


# --------------------------------------------------------------------------- per-seed metrics and their statistics
def _matrix(res: Mapping[str, Any], key: str) -> np.ndarray | None:
    rows = res.get(key)
    return _square(rows) if rows else None


def seed_metrics(res: Mapping[str, Any]) -> dict[str, float]:
    """The compared metrics of one run at one seed (fractions; NaN where absent)."""
    out = {k: float_or_nan(res.get(k)) for k in (*TEST_METRICS, *VALID_METRICS)}
    a, va = _matrix(res, "accuracy_matrix"), _matrix(res, "valid_accuracy_matrix")
    if math.isnan(out["task0_accuracy"]) and a is not None:
        out["task0_accuracy"] = float(a[0, 0])
    if va is not None:
        out["valid_task0_accuracy"] = float(va[0, 0])
    return out


def mean_std(values: Iterable[float]) -> Stat:
    """(mean, sample std with ddof=1, n) over the finite values; std is NaN for n < 2, both NaN for n = 0."""
    x = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, 0)
    return (float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size))


def aggregate(found: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, Stat]]:
    """Run -> metric -> (mean, std, n) over the seeds of :func:`find_run_results`' output."""
    out: dict[str, dict[str, Stat]] = {}
    for run, seeds in found.items():
        per_seed = [seed_metrics(r) for r in seeds]
        out[run] = {k: mean_std(m[k] for m in per_seed) for k in (*TEST_METRICS, *VALID_METRICS)}
    return out


def aggregate_runs(paths: Sequence[PathLike]) -> dict[str, dict[str, Stat]]:
    """Run -> metric -> (mean, std, n) over seeds, from experiment/run/seed dirs: for picking
    settings in code (e.g. ``aggregate_runs([exp])[run]["valid_aia"][0]``). Metrics are
    fractions: task0_accuracy, aia, last, forgetting, bwt, wer, slu_f1, valid_task0_accuracy,
    valid_aia, valid_slu_f1."""
    return aggregate(find_run_results(paths))


# --------------------------------------------------------------------------- tables
def memory_setting(settings: Mapping[str, Any] | None) -> str:
    """"1% herding", "200 random" or "none" from results.json ``settings`` ("?" when absent)."""
    if not settings:
        return "?"
    mem = settings.get("memory")
    if not mem:
        return "none"
    fraction = mem.get("fraction")
    size = f"{100 * fraction:g}%" if fraction is not None else str(mem.get("budget"))
    return f"{size} {mem.get('selection', '?')}"


def _cell(stat: Stat) -> str:
    mean, std, n = stat
    if n == 0:
        return "-"
    return f"{100 * mean:.2f}" if n == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _seeds(seeds: Sequence[Mapping[str, Any]]) -> str:
    return f"{len(seeds)} ({', '.join(str(r.get('seed', '?')) for r in seeds)})"


def _table(found: Mapping[str, Sequence[Mapping[str, Any]]], stats: Mapping[str, Mapping[str, Stat]],
           metrics: Mapping[str, str]) -> str:
    cols = [k for k in metrics if k not in OPTIONAL_METRICS or any(s[k][2] for s in stats.values())]
    lines = ["| run | method | memory | seeds | " + " | ".join(metrics[k] for k in cols) + " |",
             "|---|---|---|---|" + "---:|" * len(cols)]
    for run, seeds in found.items():
        first = seeds[0]
        cells = [_cell(stats[run][k]) for k in cols]
        lines.append(f"| {run} | {first['method']} | {memory_setting(first.get('settings'))} | {_seeds(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _settings_lines(found: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    lines = []
    for run, seeds in found.items():
        settings = [r.get("settings") for r in seeds]
        differ = " (**differs across seeds**)" if any(s != settings[0] for s in settings) else ""
        lines.append(f"- `{run}`{differ}: `{json.dumps(json_safe(settings[0]), sort_keys=True)}`")
    return lines


def comparison(paths: Sequence[PathLike], out_dir: PathLike | None = None) -> str:
    """Markdown tables over runs (test, and valid when any run scored it), mean ± std over
    seeds; with ``out_dir`` also writes ``RESULTS.md``, ``accuracy.png`` and ``matrix.png``."""
    from speechunits.slu import figures

    found = find_run_results(paths)
    stats = aggregate(found)
    text = "## Test\n\n" + _table(found, stats, TEST_METRICS)
    if any(s["valid_aia"][2] for s in stats.values()):
        text += "\n## Valid\n\n" + _table(found, stats, VALID_METRICS)
    if out_dir is not None:
        out = Path(out_dir)
        bench = ", ".join(sorted({str(r.get("benchmark")) for seeds in found.values() for r in seeds}))
        note = ("Values are % (accuracies, BWT, forgetting, WER, SLU-F1 as percentages), mean ± sample std (ddof=1) over "
                "the seeds listed in `seeds` (no ± with one seed; `-` when not measured). Columns: `task 0` = test accuracy "
                "on the first task's classes after the first task (A[0][0]); `AIA` = average incremental accuracy (mean over "
                "tasks of the accuracy on all seen classes); `last` = accuracy on all classes after the last task; "
                "`forgetting` = Chaudhry forgetting; `BWT` = backward transfer; `WER` = word error rate of the transcript "
                "after the last task; `SLU-F1` = SLURP's SLU-F1 of the entities (word and char soft span matching; SLURP runs with entity targets); the valid table gives the same on the valid "
                "split (use it, not test, for choices); `memory` = rehearsal budget and selection.\n")
        md = (f"# Class-incremental SLU: {bench}\n\n{note}\n{text}\n## Settings of each run\n\n" + "\n".join(_settings_lines(found))
              + "\n\n![accuracy on seen classes after each task](accuracy.png)\n\n![accuracy matrix](matrix.png)\n")
        atomic_write_text(out / "RESULTS.md", md)
        figures.plot_accuracy_curves(found, out / "accuracy.png", title=bench)
        figures.plot_accuracy_matrices(found, out / "matrix.png")
    return text
