"""The unit-to-speech results table (markdown) and its spectrogram figure."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.audio import load_audio
from speechunits.data.jsonl import load_manifest
from speechunits.errors import ManifestError
from speechunits.io_utils import atomic_path

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


def plot_spectrograms(panels: Sequence[tuple[str, PathLike]], out: PathLike, *, sample_rate: int = 16000,
                      title: str = "") -> Path:
    """One log-mel spectrogram per (label, audio file), stacked on a shared time axis; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from speechunits.features.mel import LogMel, MelConfig

    mel = LogMel(MelConfig(sample_rate=sample_rate))
    specs = []
    for label, path in panels:
        wave = load_audio(path, sample_rate)
        with torch.no_grad():
            specs.append((label, mel(torch.from_numpy(wave)[None])[0].numpy()))
    longest = max(s.shape[1] for _, s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(10, 1.6 * len(specs) + 0.6), sharex=True, squeeze=False)
    lo = min(float(np.percentile(s, 1)) for _, s in specs)
    hi = max(float(s.max()) for _, s in specs)
    hop_s = MelConfig().hop_length / sample_rate
    for ax, (label, spec) in zip(axes[:, 0], specs):
        ax.imshow(spec, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                  extent=(0, spec.shape[1] * hop_s, 0, spec.shape[0]))
        ax.set_xlim(0, longest * hop_s)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


def audio_of(data: PathLike, utt_id: str) -> str:
    """The audio path of ``utt_id`` in a data dir / manifest (ManifestError naming both when absent)."""
    for utt in load_manifest(data, require_text=False):
        if utt.id == utt_id:
            return utt.audio
    raise ManifestError(data, f"no utterance {utt_id!r}")
