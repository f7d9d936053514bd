"""The Markdown tables and the plot of a ``probe-phones`` report (systems x layers)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechunits.io_utils import atomic_path

METRICS: tuple[tuple[str, str], ...] = (("pnmi", "PNMI"), ("phone_purity", "phone purity"),
                                        ("cluster_purity", "cluster purity"))
"""(row key, title) of every score, in the order of the tables and panels."""


def _grid(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[int], dict[tuple[str, int], Mapping[str, Any]]]:
    systems: list[str] = []
    for row in rows:
        if row["system"] not in systems:
            systems.append(row["system"])
    layers = sorted({int(row["layer"]) for row in rows})
    return systems, layers, {(row["system"], int(row["layer"])): row for row in rows}


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_tables(report: Mapping[str, Any]) -> str:
    """One table per score: systems as rows, layers as columns (layer 0 = signal features), plus the best layer."""
    rows = report["rows"]
    systems, layers, by = _grid(rows)
    s = report["settings"]
    lines = [
        "# Phone probe: k-means of frame features against reference phones",
        "",
        f"k = {s['k']} clusters (seed {s['seed']}), {report['utterances']} utterance(s) of `{report['data']}` "
        f"(first {s['max_utts']} by id with a TextGrid; {report['missing_alignments']} without), "
        f"tier `{s['tier']}`; a frame is labelled by the phone at the centre of its receptive field, "
        "silence dropped. Layer 0: signal features (mfcc, logmel); layers 1..L: transformer layers.",
        "",
    ]
    header = "| system | " + " | ".join(f"L{layer}" for layer in layers) + " | best (layer) | frames |"
    rule = "|---|" + "---:|" * len(layers) + "---:|---:|"
    for key, title in METRICS:
        lines += [f"## {title}", "", header, rule]
        for system in systems:
            cells = [_cell(by[(system, layer)][key]) if (system, layer) in by else "" for layer in layers]
            scored = [(by[(system, layer)][key], layer) for layer in layers
                      if (system, layer) in by and by[(system, layer)][key] is not None]
            best = max(scored, key=lambda t: t[0]) if scored else None  # the lowest layer on a tie
            frames = max(by[(system, layer)]["frames"] for layer in layers if (system, layer) in by)
            best_cell = f"{best[0]:.3f} ({best[1]})" if best else "n/a"
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {best_cell} | {frames} |")
        lines.append("")
    return "\n".join(lines)


def plot_probe(report: Mapping[str, Any], out: str | os.PathLike[str], *, title: str = "") -> Path:
    """Score vs layer, one line per system and one panel per score; PNG, written atomically.

    Signal-feature systems (one "layer", 0) are drawn as a marker at layer 0 and a dashed
    horizontal line across the layers, so the encoder layers can be read against them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems, layers, by = _grid(report["rows"])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6), squeeze=False)
    span = (min(layers), max(max(layers), 1))
    for ax, (key, name) in zip(axes[0], METRICS):
        for i, system in enumerate(systems):
            xs = [layer for layer in layers if (system, layer) in by and by[(system, layer)][key] is not None]
            ys = [by[(system, layer)][key] for layer in xs]
            if not xs:
                continue
            color = f"C{i % 10}"
            if len(xs) == 1 and xs[0] == 0:
                ax.hlines(ys[0], span[0], span[1], colors=color, linestyles="--", linewidth=1.2)
                ax.plot(xs, ys, "s", color=color, label=system)
            else:
                ax.plot(xs, ys, "o-", color=color, label=system, markersize=4)
        ax.set_xlabel("layer (0 = signal features)")
        ax.set_title(name)
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score")
    axes[0][-1].legend(fontsize=8, loc="best")
    s = report["settings"]
    fig.suptitle(title or f"phone probe (k = {s['k']}, {report['utterances']} utterances, tier {s['tier']})")
    fig.tight_layout()
    path = Path(out)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


__all__ = ["METRICS", "markdown_tables", "plot_probe"]
