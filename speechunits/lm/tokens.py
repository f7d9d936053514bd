"""What an LM token is: unit sequences of a unit set, the set's identity hash, and the compatibility rule.

An LM trained on one codebook's ids means nothing on another's, and a model trained on
deduplicated (or BPE-merged) tokens scores raw frames wrongly without any error. So every
packed set carries a *producer block* (written by ``lm-pack``)::

    {"unit_set": str, "unit_set_hash": str, "kind": str, "frame_rate_hz": float, "dedup": bool,
     "bpe": null | {"model": path, "sha256": str, "vocab_size": int}, "unit_vocab_size": int}

and :func:`check_compatible` refuses to mix two blocks whose ``unit_set_hash``, ``dedup`` or BPE
model differ. :func:`unit_set_hash` hashes what defines the *meaning* of the ids (kind, frame
rate, vocabulary, special ids and the producer, e.g. the codebook hash) but not where files
live: every key named ``path`` is dropped, so moving a checkpoint keeps the hash while a
different codebook changes it.

:func:`unit_sequences` turns a quantized unit set into token sequences. Frame sets are stored
with repeats merged (``docs/unit-format.md``): ``dedup=True`` keeps them as stored (and merges
any remaining repeats), ``dedup=False`` expands every token to ``ends - starts`` ids, one per
frame. Syllable (and other non-frame) sets keep their tokens as stored with ``dedup=False``;
``dedup=True`` merges consecutive equal ids of the token sequence. Gaps (pauses between
syllables) are not tokens in either case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import ConfigError, UnitFormatError
from speechunits.io_utils import sha256_json
from speechunits.units import UnitRecord, UnitSetMeta, read_meta, read_units
from speechunits.units.meta import META_NAME, UNITS_NAME

__all__ = ["FRAME_KIND", "check_compatible", "dedup_runs", "record_tokens", "unit_sequences", "unit_set_hash"]

PathLike = str | os.PathLike[str]

FRAME_KIND = "frame"
"""The unit kind whose tokens are runs of 20 ms frames (expanded when ``dedup`` is false)."""


def _without_paths(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _without_paths(v) for k, v in obj.items() if k != "path"}
    if isinstance(obj, (list, tuple)):
        return [_without_paths(v) for v in obj]
    return obj


def unit_set_hash(meta: UnitSetMeta | Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of kind, frame_rate, vocab_size, special_ids and producer
    (every ``path`` key removed, recursively). An unquantized set (``vocab_size`` null) is a
    UnitFormatError naming its directory: it has no ids to model."""
    if isinstance(meta, UnitSetMeta):
        where: Any = meta.unit_dir
        d = meta.to_dict()
    else:
        where, d = None, dict(meta)
    if d.get("vocab_size") is None:
        raise UnitFormatError(where, "the unit set has no unit ids (vocab_size is null): run quantize first")
    core = {key: d.get(key) for key in ("kind", "frame_rate", "vocab_size", "special_ids", "producer")}
    return sha256_json(_without_paths(core))


def dedup_runs(ids: np.ndarray) -> np.ndarray:
    """Consecutive equal ids merged into one (``7 7 2 7 -> 7 2 7``)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return ids
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return ids[keep]


def unit_sequences(unit_dir: PathLike, *, dedup: bool) -> Iterator[tuple[str, np.ndarray, float]]:
    """``(utterance id, int64 token ids, audio seconds)`` of every utterance, in id order.

    Reader errors (``units.jsonl:LINE: ...``) propagate; an utterance without ``units`` is a
    UnitFormatError naming the file and line (run ``quantize`` first).
    """
    unit_dir = Path(unit_dir)
    meta = read_meta(unit_dir)
    if meta.vocab_size is None:
        raise UnitFormatError(unit_dir / META_NAME, "the unit set has no unit ids (vocab_size is null): "
                                                    "run quantize first")
    for lineno, rec in enumerate(read_units(unit_dir), start=1):
        if rec.units is None:
            raise UnitFormatError(unit_dir / UNITS_NAME, f"utterance {rec.id!r} has no 'units': the unit set is not "
                                                         "quantized (run quantize first)", lineno)
        yield rec.id, record_tokens(rec, dedup=dedup, kind=meta.kind), rec.duration


def record_tokens(rec: UnitRecord, *, dedup: bool, kind: str) -> np.ndarray:
    """The LM tokens of one quantized record: frame sets expanded to one id per frame without
    ``dedup`` (they are stored as runs), any set's consecutive repeats merged with it."""
    ids = np.asarray(rec.units or [], dtype=np.int64)
    if kind == FRAME_KIND and not dedup:
        return np.repeat(ids, np.asarray(rec.ends, dtype=np.int64) - np.asarray(rec.starts, dtype=np.int64))
    return dedup_runs(ids) if dedup else ids


def check_compatible(a: Mapping[str, Any], b: Mapping[str, Any], what_a: str, what_b: str) -> None:
    """Raise ConfigError naming both sides when two producer blocks hold tokens of different
    meaning: another unit set hash (codebook, kind, rate), another ``dedup``, or another BPE model."""
    def bpe_sha(p: Mapping[str, Any]) -> Any:
        return (p.get("bpe") or {}).get("sha256")

    checks = (("unit_set_hash", a.get("unit_set_hash"), b.get("unit_set_hash")),
              ("dedup", a.get("dedup"), b.get("dedup")),
              ("bpe.sha256", bpe_sha(a), bpe_sha(b)))
    diffs = [f"{name} {va!r} vs {vb!r}" for name, va, vb in checks if va != vb]
    if diffs:
        raise ConfigError(None, f"{what_a} and {what_b} hold incompatible tokens ({'; '.join(diffs)}): "
                                "an LM never mixes codebooks, deduplication or BPE models")
