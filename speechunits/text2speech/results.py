"""The TTS results tables (markdown) from ``tts-evaluate`` reports.

* The main table: one row per report (model), in the given order: prosody kind, mean KL and
  capacity C, the transfer correlations of median F0 and of duration per symbol (with their
  95 % bootstrap intervals), FFE, MCD, the attention failure rate and the judge's CER.
* The diversity table: per model and per (mode, temperature), the spread across seeds of the
  median F0 and of the speech duration, for groups with several seeds per sentence.

Every cell that is not defined (no reference, no judge, no seeds) is ``–``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechunits.data.jsonl import read_json_file
from speechunits.errors import ConfigError, ManifestError

PathLike = str | os.PathLike[str]

COLUMNS = ("model", "prosody", "KL (nats)", "C", "F0 corr ↑", "duration corr ↑", "z→F0 probe ↑", "z→rate probe ↑",
           "FFE (%) ↓", "MCD (dB) ↓", "attention failures (%) ↓", "judge CER (%) ↓", "scored")
DIVERSITY_COLUMNS = ("model", "mode", "temperature", "F0 spread (semitones)", "duration spread (s)", "sentences × seeds")


def parse_report_spec(spec: str) -> tuple[str, Path]:
    """``NAME=report.json`` -> (name, path); a bare path is named after its file stem."""
    name, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).stem, Path(spec)
    if not name or not path:
        raise ConfigError(None, f"--reports {spec!r}: expected NAME=report.json")
    return name, Path(path)


def load_report(path: PathLike) -> dict[str, Any]:
    """One ``tts-evaluate`` report; ManifestError naming the file when it is missing or not one."""
    path = Path(path)
    report = read_json_file(path, "report not found")
    needed = ("transfer", "ffe_pct", "mcd_db", "attention", "kl_nats", "diversity", "num_scored", "num_rows")
    if not isinstance(report, dict) or any(k not in report for k in needed):
        raise ManifestError(path, f"not a tts-evaluate report (needs keys {', '.join(needed)})")
    return report


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(float(value), fmt)


def correlation_cell(corr: Mapping[str, Any]) -> str:
    """``0.93 [0.80, 0.98] (n=12)``, or ``–``."""
    if corr.get("r") is None:
        return "–" if not corr.get("n") else f"– (n={corr['n']})"
    ci = "" if corr.get("lo") is None else f" [{corr['lo']:.2f}, {corr['hi']:.2f}]"
    return f"{corr['r']:.2f}{ci} (n={corr['n']})"


def capacity_cell(capacity: Any) -> str:
    """C, or ``C_s/C_p`` for a hierarchical model; ``–`` for none."""
    if capacity is None:
        return "–"
    if isinstance(capacity, (list, tuple)):
        return "/".join(_num(c, "g") for c in capacity)
    return _num(capacity, "g")


def table_row(name: str, report: Mapping[str, Any]) -> list[str]:
    meta = report.get("meta") or {}
    judge = report.get("judge") or {}
    transfer = report["transfer"]
    probe = report.get("latent_probe")  # absent in reports written before it existed
    return [name, str(meta.get("prosody") or "–"), _num(report["kl_nats"]["value"], ".1f"),
            capacity_cell(meta.get("capacity")), correlation_cell(transfer["f0"]), correlation_cell(transfer["duration"]),
            *(correlation_cell(probe[k]) if probe else "–" for k in ("f0", "duration")),
            _num(report["ffe_pct"]["value"], ".1f"), _num(report["mcd_db"]["value"], ".2f"),
            _num(report["attention"]["failure_pct"]["value"], ".1f"), _num(judge.get("cer"), ".1f"),
            f"{report['num_scored']}/{report['num_rows']}"]


def markdown_table(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(table_row(name, r)) + " |" for name, r in reports]
    return "\n".join(lines) + "\n"


def _temperature_cell(group: Mapping[str, Any]) -> str:
    if group.get("posterior_mean"):
        return "posterior mean"
    return "–" if group.get("temperature") is None else format(float(group["temperature"]), "g")


def diversity_table(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Groups with at least one sentence sampled with two or more seeds; empty string if none."""
    lines = []
    for name, report in reports:
        for g in report["diversity"]:
            if not (g["f0_spread_semitones"]["n"] or g["duration_spread_seconds"]["n"]):
                continue
            lines.append("| " + " | ".join([
                name, g["mode"], _temperature_cell(g), _num(g["f0_spread_semitones"]["value"], ".2f"),
                _num(g["duration_spread_seconds"]["value"], ".3f"),
                f"{g['duration_spread_seconds']['n']} × {g['max_seeds']}"]) + " |")
    if not lines:
        return ""
    head = ["| " + " | ".join(DIVERSITY_COLUMNS) + " |", "|---|---|" + "---:|" * (len(DIVERSITY_COLUMNS) - 2)]
    return "\n".join(head + lines) + "\n"


__all__ = ["COLUMNS", "DIVERSITY_COLUMNS", "capacity_cell", "correlation_cell", "diversity_table", "load_report",
           "markdown_table", "parse_report_spec", "table_row"]
