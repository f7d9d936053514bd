"""The prosody a synthetic corpus was generated with: its ``.synth/<layout>/utterances.json``.

The synthetic-corpus generator (:mod:`speechunits.data.synth`) draws each utterance's speaker
settings and records them: ``{id: {"text", "speaker": {"f0_mean" (Hz), "f0_std" (Hz),
"stretch", ...}}}``. They are the ground truth a prosody-transfer model should carry over from
a reference to its output. ``f0_mean``/``f0_std`` are ``null`` for voices without an F0
setting (the HTS voice ``slt``, espeak-ng speakers): such references count for duration only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechunits.data.jsonl import read_json_file
from speechunits.errors import ManifestError
from speechunits.eval.prosody_metrics import semitones


@dataclass(frozen=True)
class ProsodyLabel:
    """One reference utterance's generated prosody (None: the voice has no such setting)."""

    f0_semitones: float | None  # 12 * log2(f0_mean / 100 Hz)
    f0_std_hz: float | None
    stretch: float | None  # duration stretch (> 1: slower)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(value)
    return float(value)


def read_prosody_labels(path: str | os.PathLike[str]) -> dict[str, ProsodyLabel]:
    """``{utterance id: ProsodyLabel}`` of an ``utterances.json``; ManifestError naming the file and
    the utterance when an entry is not of the generator's shape."""
    path = Path(path)
    data = read_json_file(path, "prosody labels not found (the synthetic corpus's .synth/<layout>/utterances.json)")
    if not isinstance(data, dict):
        raise ManifestError(path, f"expected a JSON object {{id: {{text, speaker}}}}, found {type(data).__name__}")
    labels: dict[str, ProsodyLabel] = {}
    for utt_id, entry in data.items():
        speaker = entry.get("speaker") if isinstance(entry, dict) else None
        if not isinstance(speaker, dict):
            raise ManifestError(path, f"utterance {utt_id!r}: expected {{'text', 'speaker': {{...}}}}, found {entry!r}")
        try:
            f0_mean, f0_std, stretch = (_number(speaker.get(k)) for k in ("f0_mean", "f0_std", "stretch"))
        except TypeError as err:
            raise ManifestError(path, f"utterance {utt_id!r}: speaker values must be numbers or null, found "
                                      f"{err.args[0]!r}") from None
        if f0_mean is not None and f0_mean <= 0:
            raise ManifestError(path, f"utterance {utt_id!r}: f0_mean must be positive, found {f0_mean}")
        labels[utt_id] = ProsodyLabel(None if f0_mean is None else float(semitones(f0_mean)), f0_std, stretch)
    return labels


__all__ = ["ProsodyLabel", "read_prosody_labels"]
