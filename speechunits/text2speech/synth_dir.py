"""Reading a synthesis output directory (what ``tts-synthesize`` writes; docs/tts.md).

``OUT/manifest.jsonl`` holds one JSON object per synthesized utterance, ``OUT/meta.json`` the
model's description. Every key of a manifest line is required (a ``null`` where the contract
allows one), so a writer that forgets one is caught here, at its line, and not as a silent
hole in the report. Relative ``audio``/``attention`` paths are resolved against ``OUT``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechunits.data.jsonl import json_object_line, read_json_file
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]
MANIFEST = "manifest.jsonl"
META = "meta.json"
MODES = ("text", "transfer", "style")

_STR, _INT, _NUM, _BOOL = "a string", "an integer", "a number", "true or false"
FIELDS: dict[str, tuple[str, bool]] = {
    # key: (kind, null allowed)
    "id": (_STR, False), "source_id": (_STR, False), "text": (_STR, False), "num_symbols": (_INT, False),
    "audio": (_STR, False), "sample_rate": (_INT, False), "num_samples": (_INT, False), "mode": (_STR, False),
    "reference_id": (_STR, True), "reference_audio": (_STR, True), "seed": (_INT, False),
    "temperature": (_NUM, True), "posterior_mean": (_BOOL, False), "kl": (_NUM, True),
    "decoder_steps": (_INT, False), "stop_fired": (_BOOL, False), "attention": (_STR, True),
}
"""Every key of a manifest line, its type and whether it may be ``null``."""


@dataclass(frozen=True)
class SynthRow:
    """One synthesized utterance (paths resolved)."""

    id: str
    source_id: str
    text: str
    num_symbols: int
    audio: Path
    sample_rate: int
    num_samples: int
    mode: str
    reference_id: str | None
    reference_audio: str | None
    seed: int
    temperature: float | None
    posterior_mean: bool
    kl: float | None
    decoder_steps: int
    stop_fired: bool
    attention: Path | None
    line: int
    prosody_mean: tuple[float, ...] | None = None  # optional key: the reference's posterior mean


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str) and bool(value.strip())
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == _INT:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _parse(path: Path, root: Path, lineno: int, raw: str) -> SynthRow:
    obj = json_object_line(path, lineno, raw)
    missing = [k for k in FIELDS if k not in obj]
    if missing:
        raise ManifestError(path, f"missing key(s) {', '.join(missing)} (every key of a synthesis manifest line is "
                                  "required; null where allowed)", lineno)
    for key, (kind, nullable) in FIELDS.items():
        value = obj[key]
        if value is None and nullable:
            continue
        if not _type_ok(value, kind):
            raise ManifestError(path, f"{key!r} must be {kind}{' or null' if nullable else ''}, found {value!r}", lineno)
    if obj["mode"] not in MODES:
        raise ManifestError(path, f"'mode' must be one of {', '.join(MODES)}, found {obj['mode']!r}", lineno)
    mean = obj.get("prosody_mean")
    if mean is not None and not (isinstance(mean, list) and mean and all(_type_ok(v, _NUM) for v in mean)):
        raise ManifestError(path, f"'prosody_mean' must be a non-empty list of numbers or null, found {mean!r}", lineno)
    for key in ("num_symbols", "sample_rate"):
        if obj[key] <= 0:
            raise ManifestError(path, f"{key!r} must be positive, found {obj[key]}", lineno)
    return SynthRow(
        id=obj["id"], source_id=obj["source_id"], text=obj["text"], num_symbols=obj["num_symbols"],
        audio=root / obj["audio"], sample_rate=obj["sample_rate"], num_samples=obj["num_samples"], mode=obj["mode"],
        reference_id=obj["reference_id"], reference_audio=obj["reference_audio"], seed=obj["seed"],
        temperature=None if obj["temperature"] is None else float(obj["temperature"]),
        posterior_mean=obj["posterior_mean"], kl=None if obj["kl"] is None else float(obj["kl"]),
        decoder_steps=obj["decoder_steps"], stop_fired=obj["stop_fired"],
        attention=None if obj["attention"] is None else root / obj["attention"], line=lineno,
        prosody_mean=None if mean is None else tuple(float(v) for v in mean))


def read_synth_manifest(out_dir: PathLike) -> list[SynthRow]:
    """The rows of ``OUT/manifest.jsonl`` in file order; ManifestError (file:line) on a malformed
    line, a duplicate id, or an empty manifest."""
    root = Path(out_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise ManifestError(path, "no synthesis manifest here (is this a tts-synthesize output directory?)")
    rows: list[SynthRow] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            row = _parse(path, root, lineno, raw)
            if row.id in seen:
                raise ManifestError(path, f"duplicate id {row.id!r} (first on line {seen[row.id]})", lineno)
            seen[row.id] = lineno
            rows.append(row)
    if not rows:
        raise ManifestError(path, "the synthesis manifest is empty")
    return rows


def read_synth_meta(out_dir: PathLike) -> dict[str, Any]:
    """``OUT/meta.json`` (a JSON object); ManifestError when it is missing or malformed."""
    path = Path(out_dir) / META
    meta = read_json_file(path, "missing: a synthesis output directory has meta.json beside its manifest")
    if not isinstance(meta, dict):
        raise ManifestError(path, f"expected a JSON object, found {type(meta).__name__}")
    return meta


__all__ = ["FIELDS", "MANIFEST", "META", "MODES", "SynthRow", "read_synth_manifest", "read_synth_meta"]
