"""Choosing loss settings on the valid split (``speechunits slu-select``).

The sweep runs of ``recipes/slu_cil.sh --sweep`` are ordinary runs (one method, several loss
settings) whose ``results.json`` record the losses they used (``settings.losses``). The
choice reads only *valid* metrics (``valid_aia`` by default, mean over the sweep's seeds):
the test split is never used to choose. The chosen losses are written as ``key=value``
overrides (``chosen.txt``, appended to every later run's overrides by the recipe) and the
whole sweep as a table (``SWEEP.md``), so the value behind each choice can be read later.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.slu.results import aggregate, find_run_results

PathLike = str | os.PathLike[str]

LOSS_KEYS = ("nspt", "mm", "nspt_temperature", "mm_temperature")
"""The loss settings a sweep may vary (``losses.<key>``); seq-KD's weight is not swept."""


def _losses(seeds: Sequence[Mapping[str, Any]], run: str) -> dict[str, float]:
    settings = [r.get("settings") or {} for r in seeds]
    losses = [s.get("losses") for s in settings]
    if any(not isinstance(x, Mapping) for x in losses):
        raise ConfigError(None, f"run {run!r}: results.json without settings.losses (made before runs recorded them)")
    if any(x != losses[0] for x in losses):
        raise ConfigError(None, f"run {run!r}: its seeds used different loss settings")
    return {k: float(losses[0][k]) for k in LOSS_KEYS}


def select_losses(paths: Sequence[PathLike], metric: str = "valid_aia") -> tuple[str, dict[str, float], str]:
    """``(best run, its loss settings, markdown table of the sweep)``: the run with the highest
    mean ``metric`` (a valid-split metric) over its seeds; ties go to the run listed first."""
    if not metric.startswith("valid_"):
        raise ConfigError(None, f"metric {metric!r}: choices are made on the valid split only (valid_aia, valid_task0_accuracy, ...)")
    found = find_run_results(paths)
    stats = aggregate(found)
    if metric not in next(iter(stats.values())):
        raise ConfigError(None, f"unknown metric {metric!r}; known: {', '.join(k for k in next(iter(stats.values())) if k.startswith('valid_'))}")
    scored = {run: stats[run][metric] for run in found}
    if all(math.isnan(s[0]) for s in scored.values()):
        raise ConfigError(None, f"no sweep run has a {metric} (were they run with a valid split and eval_valid=true?)")
    best = max(scored, key=lambda r: -math.inf if math.isnan(scored[r][0]) else scored[r][0])
    lines = [f"| run | {' | '.join(LOSS_KEYS)} | {metric} (%) | seeds |", "|---|" + "---:|" * (len(LOSS_KEYS) + 2)]
    for run, seeds in found.items():
        mean, std, n = scored[run]
        cell = "-" if math.isnan(mean) else f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")
        mark = " **(chosen)**" if run == best else ""
        lines.append(f"| {run}{mark} | " + " | ".join(f"{v:g}" for v in _losses(seeds, run).values()) + f" | {cell} | {n} |")
    return best, _losses(found[best], best), "\n".join(lines) + "\n"


def overrides(losses: Mapping[str, float]) -> str:
    """``losses.nspt=0.1 losses.mm=0.5 ...``: the config overrides of a choice."""
    return " ".join(f"losses.{k}={v:g}" for k, v in losses.items())


def write_selection(paths: Sequence[PathLike], out_dir: PathLike, metric: str = "valid_aia") -> tuple[str, dict[str, float]]:
    """Choose (:func:`select_losses`) and write ``<out>/chosen.txt`` and ``<out>/SWEEP.md``."""
    best, losses, table = select_losses(paths, metric)
    out = Path(out_dir)
    atomic_write_text(out / "chosen.txt", overrides(losses) + "\n")
    atomic_write_text(out / "SWEEP.md", f"# Loss settings chosen on the valid split\n\nChosen: `{best}` by the mean "
                                        f"{metric} over its seeds ({overrides(losses)}). The test split was not used.\n\n{table}")
    return best, losses
