"""Unit re-recognition: do the units of synthesized speech match the units it was made from?

The synthesized audio is tokenized again with the same tokenizer (``speechunits tokenize`` or
``frame-units --codebook``) into a second unit set; this module compares the two sets, matched
by utterance id:

* **unit edit distance** (both sets quantized): Levenshtein distance between the two
  deduplicated id sequences (gaps ignored), summed over utterances and divided by the total
  input length, in percent (a unit error rate; 0 = every unit recognised again);
* **boundary scores** (syllable sets): precision, recall, F1 and R-value of the re-recognised
  segment boundaries against the input segmentation, at ``tolerance`` seconds
  (:mod:`speechunits.eval.boundaries`; corpus-level counts).

Utterances of the input set missing from the re-recognised set are counted and listed (they
failed to synthesize or to tokenize), never silently dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.eval.boundaries import DEFAULT_TOLERANCE, evaluate_boundaries, segment_boundaries
from speechunits.eval.intelligibility import levenshtein
from speechunits.units.convert import frames_to_runs
from speechunits.units.meta import read_meta
from speechunits.units.reader import read_units

PathLike = str | os.PathLike[str]


def _dedup(ids: list[int]) -> list[int]:
    """Consecutive repeats merged (the units of :func:`~speechunits.units.convert.frames_to_runs`)."""
    return frames_to_runs(ids)[0]


def rerecognition_scores(input_units: PathLike, rerecognized: PathLike, *,
                         tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Compare ``rerecognized`` (units of the synthesized audio) with ``input_units``."""
    src_meta, out_meta = read_meta(input_units), read_meta(rerecognized)
    if src_meta.frame_rate != out_meta.frame_rate:
        raise UnitFormatError(Path(rerecognized) / "meta.json", f"frame rate {out_meta.frame_rate} differs from the "
                                                                f"input set's {src_meta.frame_rate} ({input_units})")
    src = {r.id: r for r in read_units(input_units)}
    out = {r.id: r for r in read_units(rerecognized)}
    ids = sorted(set(src) & set(out))
    result: dict[str, Any] = {"kind": src_meta.kind, "utterances": len(ids),
                              "missing": sorted(set(src) - set(out))}
    quantized = all(src[i].units is not None and out[i].units is not None for i in ids)
    if ids and quantized:
        edits = sum(levenshtein(_dedup(list(src[i].units)), _dedup(list(out[i].units))) for i in ids)  # type: ignore[arg-type]
        total = sum(len(_dedup(list(src[i].units))) for i in ids)  # type: ignore[arg-type]
        result["unit_edit_distance_pct"] = 100.0 * edits / max(total, 1)
    if src_meta.kind == "syllable" and ids:
        rate = src_meta.frame_rate_hz

        def bounds(rec: Any) -> np.ndarray:
            return segment_boundaries(np.stack([rec.starts, rec.ends], axis=1).reshape(-1, 2), rate)

        scores = evaluate_boundaries({i: bounds(out[i]) for i in ids}, {i: bounds(src[i]) for i in ids}, tolerance)
        result["boundaries"] = scores.as_percent()
        result["tolerance_s"] = tolerance
    return result
