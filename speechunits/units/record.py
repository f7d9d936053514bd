"""One line of ``units.jsonl``: the :class:`UnitRecord` and its parse/serialise/validate rules.

Every rule of the unit format (``docs/unit-format.md``, section 2) that concerns a single utterance lives in
:func:`check_record`; the reader, the writer, the merger and the validator all call it, so
a record the writer accepts is exactly a record the reader accepts.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.units.meta import UnitSetMeta, is_json_int

PathLike = str | os.PathLike[str]

REQUIRED = ("id", "audio", "num_samples", "sample_rate", "starts", "ends")
OPTIONAL = ("units", "speaker", "text", "f0", "loudness")
FIELDS = REQUIRED + OPTIONAL
# ids end up in Kaldi (`utt u1 ...`) and fairseq (`id|u1 ...`) lines: no whitespace, no '|'.
_BAD_ID = re.compile(r"[\s|]")
# Frames an utterance's last end may exceed ceil(num_samples / hop) by (front-end padding).
END_TOLERANCE = 1


@dataclass
class UnitRecord:
    """One utterance of a unit set; tokens are the half-open frame spans ``[starts[i], ends[i])``."""

    id: str
    audio: str
    num_samples: int
    sample_rate: int
    starts: list[int]
    ends: list[int]
    units: list[int] | None = None
    speaker: str | None = None
    text: str | None = None
    f0: list[float] | None = None
    loudness: list[float] | None = None

    @property
    def num_tokens(self) -> int:
        """Number of tokens (segments) of the utterance."""
        return len(self.starts)

    @property
    def duration(self) -> float:
        """Audio duration in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def segments(self) -> np.ndarray:
        """(N, 2) int64 ``[start, end)`` frames of the tokens."""
        return np.stack((np.asarray(self.starts, dtype=np.int64), np.asarray(self.ends, dtype=np.int64)),
                        axis=1).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in field order; optional fields that are None are omitted."""
        d: dict[str, Any] = {k: getattr(self, k) for k in REQUIRED}
        for key in OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitRecord:
        """Inverse of :meth:`to_dict` (no validation: see :func:`check_record`)."""
        return cls(**{k: d.get(k) for k in FIELDS})


def _fail(path: PathLike | None, line: int | None, utt: Any, problem: str) -> UnitFormatError:
    who = f"utterance {utt!r}: " if isinstance(utt, str) else ""
    return UnitFormatError(path, who + problem, line)


def check_fields(d: Any, path: PathLike | None = None, line: int | None = None) -> None:
    """Presence and JSON types of every field of one decoded line."""
    if not isinstance(d, dict):
        raise UnitFormatError(path, f"expected a JSON object, found {type(d).__name__}", line)
    utt = d.get("id")
    for key in REQUIRED:
        if key not in d or d[key] is None:
            raise _fail(path, line, utt, f"missing required field {key!r}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise _fail(path, line, utt, f"unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    if not isinstance(utt, str) or not utt or _BAD_ID.search(utt):
        raise UnitFormatError(path, f"field 'id' must be a non-empty string without whitespace or '|', found {utt!r}", line)
    if not isinstance(d["audio"], str) or not d["audio"]:
        raise _fail(path, line, utt, f"field 'audio' must be a non-empty string, found {d['audio']!r}")
    if not is_json_int(d["num_samples"]) or d["num_samples"] < 0:
        raise _fail(path, line, utt, f"field 'num_samples' must be a non-negative integer, found {d['num_samples']!r}")
    if not is_json_int(d["sample_rate"]) or d["sample_rate"] <= 0:
        raise _fail(path, line, utt, f"field 'sample_rate' must be a positive integer, found {d['sample_rate']!r}")
    for key in ("starts", "ends", "units"):
        value = d.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(is_json_int(v) for v in value):
            raise _fail(path, line, utt, f"field {key!r} must be a list of integers, found {_short(value)}")
    for key in ("speaker", "text"):
        value = d.get(key)
        if value is not None and not isinstance(value, str):
            raise _fail(path, line, utt, f"field {key!r} must be a string or absent, found {value!r}")
    for key in ("f0", "loudness"):
        value = d.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        ):
            raise _fail(path, line, utt, f"field {key!r} must be a list of finite numbers, found {_short(value)}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_record(
    rec: UnitRecord, meta: UnitSetMeta | None = None, path: PathLike | None = None, line: int | None = None
) -> None:
    """Raise UnitFormatError (with ``path:line``) unless ``rec`` obeys every per-utterance rule.

    Rules: ``starts``/``ends`` (and ``units``/``f0``/``loudness`` when present) have one entry
    per token; ``0 <= start < end``; tokens are in time order and do not overlap
    (``start[i] >= end[i-1]``); unit ids are ``>= 0`` and ``< vocab_size``; the last end is at
    most ``ceil(duration * frame_rate) + 1``.
    """
    utt = rec.id
    n = len(rec.starts)
    if len(rec.ends) != n:
        raise _fail(path, line, utt, f"'starts' has {n} entries but 'ends' has {len(rec.ends)}")
    for key in ("units", "f0", "loudness"):
        value = getattr(rec, key)
        if value is not None and len(value) != n:
            raise _fail(path, line, utt, f"{key!r} has {len(value)} entries but there are {n} tokens (starts/ends)")
    prev_end = 0
    for i, (s, e) in enumerate(zip(rec.starts, rec.ends)):
        if s < 0:
            raise _fail(path, line, utt, f"token {i}: negative start {s}")
        if s >= e:
            raise _fail(path, line, utt, f"token {i}: start {s} >= end {e} (intervals are [start, end), non-empty)")
        if s < prev_end:
            raise _fail(path, line, utt, f"token {i}: start {s} < previous end {prev_end} "
                                         "(tokens must be in time order and must not overlap)")
        prev_end = e
    if rec.units is not None:
        vocab = meta.vocab_size if meta is not None else None
        for i, u in enumerate(rec.units):
            if u < 0:
                raise _fail(path, line, utt, f"token {i}: negative unit id {u}")
            if vocab is not None and u >= vocab:
                raise _fail(path, line, utt, f"token {i}: unit id {u} >= vocab_size {vocab}")
    if meta is not None and n:
        limit = meta.audio_frames(rec.num_samples, rec.sample_rate) + END_TOLERANCE
        if rec.ends[-1] > limit:
            raise _fail(path, line, utt, f"last end {rec.ends[-1]} is beyond the audio: {rec.num_samples} samples at "
                                         f"{rec.sample_rate} Hz are {limit - END_TOLERANCE} frames at "
                                         f"{meta.frame_rate} (tolerance {END_TOLERANCE})")


def parse_line(
    raw: str, meta: UnitSetMeta | None = None, path: PathLike | None = None, line: int | None = None,
    *, validate: bool = True,
) -> UnitRecord:
    """One ``units.jsonl`` line -> UnitRecord; raises UnitFormatError with ``path:line``."""
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UnitFormatError(path, f"invalid JSON ({err.msg} at column {err.colno})", line) from None
    except (ValueError, RecursionError) as err:  # an integer over Python's digit limit; nesting too deep
        raise UnitFormatError(path, f"invalid JSON ({type(err).__name__}: {err})", line) from None
    check_fields(d, path, line)
    rec = UnitRecord.from_dict(d)
    if validate:
        check_record(rec, meta, path, line)
    return rec


def dump_line(rec: UnitRecord) -> str:
    """The canonical one-line JSON of a record (no trailing newline)."""
    return json.dumps(rec.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def coerce_record(fields: dict[str, Any], path: PathLike | None = None) -> UnitRecord:
    """Build a record from writer arguments (numpy arrays/ints accepted) and type-check it."""
    d: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
            value = value.tolist()
        if key in ("starts", "ends", "units") and isinstance(value, (list, tuple)):
            value = [int(v) if _is_integral(v) else v for v in value]
        elif key in ("f0", "loudness") and isinstance(value, (list, tuple)):
            value = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        elif key in ("num_samples", "sample_rate") and _is_integral(value):
            value = int(value)
        d[key] = value
    check_fields(d, path)
    return UnitRecord.from_dict(d)


def _is_integral(value: Any) -> bool:
    import numpy as np

    return is_json_int(value) or isinstance(value, np.integer)
