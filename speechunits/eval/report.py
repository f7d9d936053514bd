"""Results tables and plots over several ``eval-boundaries`` reports (RESULTS.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechunits.errors import ConfigError
from speechunits.eval.boundaries import MATCHING_NAMES
from speechunits.io_utils import atomic_path

COLUMNS = ("P", "R", "F1", "R-val", "tok/s", "ref tok/s", "shift (ms)", "utts")


def load_report(path: str | Path) -> dict[str, Any]:
    """One JSON report written by ``speechunits eval-boundaries --json``."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(path, "evaluation report does not exist") from err
    except ValueError as err:
        raise ConfigError(path, f"not a JSON evaluation report ({err})") from err
    if not isinstance(report, dict) or "boundaries" not in report:
        raise ConfigError(path, "not an eval-boundaries report (no 'boundaries' key)")
    return report


def row_of(report: Mapping[str, Any]) -> list[str]:
    """The table cells of one report, in :data:`COLUMNS` order (plus purity when present)."""
    b = report["boundaries"]
    cells = [f"{b['precision']:.1f}", f"{b['recall']:.1f}", f"{b['f1']:.1f}", f"{b['r_value']:.1f}",
             f"{report['tokens_per_second']:.2f}", f"{report['ref_tokens_per_second']:.2f}",
             f"{1000 * report['shift']:+.0f}", str(report["utterances"])]
    if "purity" in report:
        cells += [f"{report['purity']['syllable_purity']:.1f}", f"{report['purity']['cluster_purity']:.1f}"]
    return cells


def markdown_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A markdown table with one row per (system name, report)."""
    purity = any("purity" in r for _, r in rows)
    head = ["system", *COLUMNS, *(["syll. purity", "cluster purity"] if purity else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, report in rows:
        cells = row_of(report)
        if purity and "purity" not in report:
            cells += ["", ""]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def plot_scores(rows: Sequence[tuple[str, Mapping[str, Any]]], out: str | Path, title: str = "") -> None:
    """Grouped bars of P/R/F1/R-value per system, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [("precision", "P"), ("recall", "R"), ("f1", "F1"), ("r_value", "R-value")]
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, report) in enumerate(rows):
        vals = [report["boundaries"][key] for key, _ in metrics]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, [label for _, label in metrics])
    ax.set_ylabel("%")
    low = min(r["boundaries"][k] for _, r in rows for k, _ in metrics)
    ax.set_ylim(max(0.0, low - 15), 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "syllable boundary scores")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _matching_note(report: dict[str, Any]) -> str:
    """The matching a report was scored with (reports written before the option: the maximum one)."""
    matching = report.get("matching", "max")
    return MATCHING_NAMES.get(matching, f"{matching} matching")


def _reference_note(report: dict[str, Any]) -> str:
    """Where a report's reference syllables came from, for the RESULTS.md note."""
    if report.get("reference") == "syllabified phones":
        return f"references: phone tier '{report['tier']}' syllabified"
    return f"reference tier '{report['tier']}'"


def write_results(
    out: str | Path, rows: Sequence[tuple[str, str | Path]], *, title: str, notes: str = "", plot: str | Path | None = None
) -> str:
    """Write RESULTS.md (and the plot) from (system name, report path) pairs; returns the text."""
    if not rows:
        raise ConfigError(None, "no evaluation reports given")
    loaded = [(name, load_report(path)) for name, path in rows]
    first = loaded[0][1]
    text = [f"# {title}", ""]
    if notes:
        text += [notes, ""]
    text += [markdown_table(loaded), "",
             f"Boundary tolerance {1000 * first['tolerance']:.0f} ms, {_matching_note(first)}; "
             f"P/R/F1/R-value in %; tokens per second over the total audio duration; {_reference_note(first)}.", ""]
    text += [f"- {name}: units `{report['units']}`" + (f", shift tuned on `{report['shift_tuned_on']['units']}`"
                                                        if report.get("shift_tuned_on") else "")
             for name, report in loaded]
    if plot is not None:
        plot_scores(loaded, plot, title)
        text += ["", f"![scores]({Path(plot).name})"]
    body = "\n".join(text) + "\n"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
    return body
