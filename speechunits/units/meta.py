"""``meta.json`` of a unit set: the :class:`UnitSetMeta` record and its reader/writer.

``meta.json`` is written once per unit set (and once per shard as ``meta.JOB.json`` while a
sharded job runs). It fixes everything the per-utterance lines share: the format version,
the token kind, the exact frame rate ``sample_rate/hop``, the vocabulary, the embedding
size, the producer and where relative audio paths resolve. See ``docs/unit-format.md``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechunits.errors import UnitFormatError
from speechunits.io_utils import atomic_write_json, json_text

PathLike = str | os.PathLike[str]

FORMAT = "speechunits.units/1"
INTERVAL_CONVENTION = "[start, end)"
SPECIAL_NAMES = ("pad", "bos", "eos", "silence")
META_NAME = "meta.json"
UNITS_NAME = "units.jsonl"

_KNOWN_KEYS = {
    "format", "kind", "frame_rate", "frame_rate_hz", "sample_rate", "hop", "interval_convention",
    "vocab_size", "embedding_dim", "special_ids", "producer", "source_manifest", "audio_root",
    "num_utterances", "num_tokens", "job", "nj",
}


def is_json_int(value: Any) -> bool:
    """A JSON integer that fits in 64 bits (what every consumer, numpy included, can hold; a larger one
    made ``num_samples / sample_rate`` raise OverflowError in validate_unit_set)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def default_special_ids() -> dict[str, int | None]:
    """``{"pad": None, "bos": None, "eos": None, "silence": None}``."""
    return {name: None for name in SPECIAL_NAMES}


@dataclass
class UnitSetMeta:
    """The contents of ``meta.json`` (see ``docs/unit-format.md`` for every key).

    ``frame_rate`` (the exact string ``"<sample_rate>/<hop>"``) and ``frame_rate_hz`` are
    derived from ``sample_rate`` and ``hop``. ``unit_dir`` is where the meta was read from
    (not serialised); :meth:`resolve_audio` resolves relative paths against it.
    """

    kind: str
    sample_rate: int
    hop: int
    format: str = FORMAT
    interval_convention: str = INTERVAL_CONVENTION
    vocab_size: int | None = None
    embedding_dim: int | None = None
    special_ids: dict[str, int | None] = field(default_factory=default_special_ids)
    producer: dict[str, Any] = field(default_factory=dict)
    source_manifest: str | None = None
    audio_root: str | None = None
    num_utterances: int | None = None
    num_tokens: int | None = None
    job: int | None = None
    nj: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unit_dir: Path | None = field(default=None, compare=False, repr=False)

    @property
    def frame_rate(self) -> str:
        """The exact frame rate of start/end indices, ``"<sample_rate>/<hop>"`` (e.g. ``"16000/320"``)."""
        return f"{self.sample_rate}/{self.hop}"

    @property
    def frame_rate_hz(self) -> float:
        """``sample_rate / hop`` as a float (e.g. 50.0)."""
        return self.sample_rate / self.hop

    def audio_frames(self, num_samples: int, sample_rate: int) -> int:
        """Frames (at this set's rate) covering ``num_samples`` samples at ``sample_rate``: ceil."""
        return -(-num_samples * self.sample_rate // (sample_rate * self.hop))

    def resolved_audio_root(self, unit_dir: PathLike | None = None) -> Path:
        """Directory that relative ``audio`` paths resolve against (``audio_root`` joined to the unit dir)."""
        base = Path(unit_dir) if unit_dir is not None else self.unit_dir
        if base is None:
            raise UnitFormatError(None, "cannot resolve audio paths: the unit directory is unknown")
        base = base.absolute()
        return base / self.audio_root if self.audio_root else base

    def resolve_audio(self, rec: Any, unit_dir: PathLike | None = None) -> Path:
        """Absolute path of a record's audio (``rec`` is a UnitRecord or a path string)."""
        audio = rec if isinstance(rec, (str, os.PathLike)) else rec.audio
        path = Path(audio)
        return path if path.is_absolute() else self.resolved_audio_root(unit_dir) / path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with every key of ``meta.json`` (``job``/``nj`` only for shard metas)."""
        d: dict[str, Any] = {
            "format": self.format,
            "kind": self.kind,
            "frame_rate": self.frame_rate,
            "frame_rate_hz": self.frame_rate_hz,
            "sample_rate": self.sample_rate,
            "hop": self.hop,
            "interval_convention": self.interval_convention,
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "special_ids": {name: self.special_ids.get(name) for name in SPECIAL_NAMES},
            "producer": dict(self.producer),
            "source_manifest": self.source_manifest,
            "audio_root": self.audio_root,
            "num_utterances": self.num_utterances,
            "num_tokens": self.num_tokens,
        }
        if self.job is not None:
            d["job"] = self.job
            d["nj"] = self.nj
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Any, path: PathLike | None = None) -> UnitSetMeta:
        """Validate and build; raises UnitFormatError naming ``path`` on any problem."""
        if not isinstance(d, dict):
            raise UnitFormatError(path, f"expected a JSON object, found {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise UnitFormatError(path, f"unsupported format {fmt!r}; expected {FORMAT!r}")
        for key in ("kind", "sample_rate", "hop", "frame_rate", "interval_convention"):
            if key not in d:
                raise UnitFormatError(path, f"missing required key {key!r}")
        if not isinstance(d["kind"], str) or not d["kind"]:
            raise UnitFormatError(path, f"'kind' must be a non-empty string, found {d['kind']!r}")
        for key in ("sample_rate", "hop"):
            if not is_json_int(d[key]) or d[key] <= 0:
                raise UnitFormatError(path, f"{key!r} must be a positive integer, found {d[key]!r}")
        expected_rate = f"{d['sample_rate']}/{d['hop']}"
        if d["frame_rate"] != expected_rate:
            raise UnitFormatError(path, f"'frame_rate' must be the string {expected_rate!r} "
                                        f"(sample_rate/hop), found {d['frame_rate']!r}")
        hz = d.get("frame_rate_hz")
        if hz is not None and (not isinstance(hz, (int, float)) or isinstance(hz, bool)
                               or not math.isclose(hz, d["sample_rate"] / d["hop"], rel_tol=1e-9)):
            raise UnitFormatError(path, f"'frame_rate_hz' must be {d['sample_rate'] / d['hop']}, found {hz!r}")
        if d["interval_convention"] != INTERVAL_CONVENTION:
            raise UnitFormatError(path, f"'interval_convention' must be {INTERVAL_CONVENTION!r}, "
                                        f"found {d['interval_convention']!r}")
        for key in ("vocab_size", "embedding_dim", "num_utterances", "num_tokens", "job", "nj"):
            value = d.get(key)
            positive = key in ("vocab_size", "embedding_dim", "nj")
            if value is not None and (not is_json_int(value) or value < int(positive)):
                what = "positive" if positive else "non-negative"
                raise UnitFormatError(path, f"{key!r} must be null or a {what} integer, found {value!r}")
        special = d.get("special_ids") or {}
        if not isinstance(special, dict):
            raise UnitFormatError(path, f"'special_ids' must be an object, found {special!r}")
        unknown = set(special) - set(SPECIAL_NAMES)
        if unknown:
            raise UnitFormatError(path, f"unknown special id name(s) {sorted(unknown)}; allowed: {list(SPECIAL_NAMES)}")
        for name, value in special.items():
            if value is None:
                continue
            if not is_json_int(value) or value < 0:
                raise UnitFormatError(path, f"special id {name!r} must be null or a non-negative integer, found {value!r}")
            if d.get("vocab_size") is not None and value >= d["vocab_size"]:
                raise UnitFormatError(path, f"special id {name!r}={value} is outside the vocabulary "
                                            f"(vocab_size {d['vocab_size']})")
        producer = d.get("producer") or {}
        if not isinstance(producer, dict):
            raise UnitFormatError(path, f"'producer' must be an object, found {producer!r}")
        for key in ("source_manifest", "audio_root"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise UnitFormatError(path, f"{key!r} must be null or a string, found {d[key]!r}")
        special_ids = default_special_ids()
        special_ids.update(special)
        return cls(
            kind=d["kind"], sample_rate=d["sample_rate"], hop=d["hop"], format=fmt,
            interval_convention=d["interval_convention"], vocab_size=d.get("vocab_size"),
            embedding_dim=d.get("embedding_dim"), special_ids=special_ids, producer=dict(producer),
            source_manifest=d.get("source_manifest"), audio_root=d.get("audio_root"),
            num_utterances=d.get("num_utterances"), num_tokens=d.get("num_tokens"),
            job=d.get("job"), nj=d.get("nj"), extra={k: v for k, v in d.items() if k not in _KNOWN_KEYS},
        )

    def shared(self) -> dict[str, Any]:
        """The keys every shard of one unit set must agree on (no counts, no job/nj)."""
        d = self.to_dict()
        for key in ("num_utterances", "num_tokens", "job", "nj"):
            d.pop(key, None)
        return d


def read_meta_file(path: PathLike) -> UnitSetMeta:
    """Read and validate one meta file (``meta.json`` or a shard's ``meta.JOB.json``)."""
    path = Path(path)
    if not path.is_file():
        raise UnitFormatError(path, "missing meta file (a unit set directory needs meta.json)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UnitFormatError(path, f"invalid JSON ({err.msg})", err.lineno) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UnitFormatError(path, f"unreadable ({err})") from None
    except (ValueError, RecursionError) as err:  # an integer over Python's digit limit; nesting too deep
        raise UnitFormatError(path, f"invalid JSON ({type(err).__name__}: {err})") from None
    meta = UnitSetMeta.from_dict(obj, path)
    meta.unit_dir = path.parent
    return meta


def read_meta(unit_dir: PathLike) -> UnitSetMeta:
    """The validated ``meta.json`` of a unit set directory."""
    return read_meta_file(Path(unit_dir) / META_NAME)


def write_meta(unit_dir: PathLike, meta: UnitSetMeta, name: str = META_NAME, *, atomic: bool = True) -> Path:
    """Write ``meta`` atomically as ``unit_dir/name`` (validated first). ``atomic=False``: ``name``
    is the caller's own temporary, which it renames into place (no temporary of a temporary,
    whose name no rerun would recognise to remove after a kill)."""
    path = Path(unit_dir) / name
    UnitSetMeta.from_dict(meta.to_dict(), path)
    if atomic:
        atomic_write_json(path, meta.to_dict())
    else:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(json_text(meta.to_dict()))
            f.flush()
            os.fsync(f.fileno())
    return path
