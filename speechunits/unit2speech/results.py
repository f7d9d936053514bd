"""The unit-to-speech results table (markdown); its spectrogram figure is drawn by speechunits.features.spectrogram_plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechunits.data.jsonl import load_manifest
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

COLUMNS = ("system", "MCD (dB) ↓", "log-F0 RMSE (cents) ↓", "V/UV error (%) ↓", "STOI ↑", "judge CER (%) ↓",
           "judge WER (%) ↓", "re-recognition", "scored")


def load_reports(paths: Sequence[PathLike]) -> list[dict[str, Any]]:
    """The JSON reports of ``evaluate-synthesis``, in the given order."""
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(float(value), fmt)


def rerecognition_cell(rr: Mapping[str, Any]) -> str:
    """``unit ED x%`` and/or ``boundary F1 y`` (empty report: ``–``)."""
    parts = []
    if "unit_edit_distance_pct" in rr:
        parts.append(f"unit ED {rr['unit_edit_distance_pct']:.1f}%")
    if "boundaries" in rr:
        parts.append(f"boundary F1 {rr['boundaries']['f1']:.1f}")
    return ", ".join(parts) or "–"


def table_row(report: Mapping[str, Any]) -> list[str]:
    return [str(report["name"]), _num(report.get("mcd_db"), ".2f"), _num(report.get("log_f0_rmse_cents"), ".0f"),
            _num(report.get("voicing_error_pct"), ".1f"), _num(report.get("stoi"), ".3f"),
            _num(report.get("judge_cer"), ".1f"), _num(report.get("judge_wer"), ".1f"),
            rerecognition_cell(report.get("rerecognition") or {}),
            f"{report['num_scored']}/{report['num_reference']}"]


def markdown_table(reports: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" + "---:|" * 7 + "---|"]
    lines += ["| " + " | ".join(table_row(r)) + " |" for r in reports]
    return "\n".join(lines) + "\n"


def audio_of(data: PathLike, utt_id: str) -> str:
    """The audio path of ``utt_id`` in a data dir / manifest (ManifestError naming both when absent)."""
    for utt in load_manifest(data, require_text=False):
        if utt.id == utt_id:
            return utt.audio
    raise ManifestError(data, f"no utterance {utt_id!r}")
