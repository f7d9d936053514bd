"""A stored F0 directory, extracted once per corpus by ``speechunits extract-f0``.

Layout::

    F0_DIR/meta.json          {"format": "speechunits.f0/1", "hop_seconds", "floor_hz", "ceiling_hz",
                               "method": "praat-ac", "num_utterances", "log_f0_mean", "log_f0_std"}
    F0_DIR/f0/<utt_id>.npy    float32 Hz per hop (frame i at i * hop_seconds), 0 = unvoiced
    F0_DIR/bad_utts.txt       id<TAB>reason of the utterances left out (when any)
    F0_DIR/provenance.json    written last: the directory is complete

``log_f0_mean`` / ``log_f0_std`` are the mean and (population) standard deviation of the
natural log of F0 over every voiced frame of the corpus, for normalising log-F0 inputs;
``null`` (read as NaN) when the corpus has no voiced frame.

:class:`F0Store` reads a directory; :func:`write_f0`, :func:`log_f0_stats` and
:func:`write_meta` are the writer's pieces (used by :mod:`speechunits.features.f0_cli`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import DataError
from speechunits.features.f0 import METHOD, F0Config
from speechunits.io_utils import atomic_path, atomic_write_json, load_npy

F0_FORMAT = "speechunits.f0/1"
META_NAME = "meta.json"
F0_SUBDIR = "f0"
SUFFIX = ".npy"


def check_utt_id(utt_id: str) -> str | None:
    """Why ``utt_id`` cannot name a file of the store (None when it can)."""
    if not utt_id or utt_id in {".", ".."} or "/" in utt_id or os.sep in utt_id or "\0" in utt_id:
        return f"utterance id {utt_id!r} cannot be a file name"
    if utt_id.startswith("."):
        return f"utterance id {utt_id!r} starts with '.' (hidden temporaries do)"
    return None


def f0_path(root: str | os.PathLike[str], utt_id: str) -> Path:
    """``root/f0/<utt_id>.npy``."""
    return Path(root) / F0_SUBDIR / f"{utt_id}{SUFFIX}"


def write_f0(root: str | os.PathLike[str], utt_id: str, f0_hz: np.ndarray) -> Path:
    """Save one track (float32, 1-D) atomically; returns its path."""
    path = f0_path(root, utt_id)
    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(f0_hz, dtype=np.float32).reshape(-1), allow_pickle=False)
    return path


def stored_ids(root: str | os.PathLike[str]) -> set[str]:
    """Ids of the tracks in ``root/f0/`` (finished files only, never temporaries)."""
    folder = Path(root) / F0_SUBDIR
    if not folder.is_dir():
        return set()
    return {p.name[: -len(SUFFIX)] for p in folder.iterdir()
            if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file()}


def read_f0(path: str | os.PathLike[str]) -> np.ndarray:
    """One stored track; DataError naming the file when missing, unreadable or not a 1-D float array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "F0 track does not exist")
    f0 = load_npy(path, DataError, "F0 track")
    if f0.ndim != 1 or not np.issubdtype(f0.dtype, np.floating):
        raise DataError(path, f"expected a 1-D float array of F0 in Hz, found shape {f0.shape} dtype {f0.dtype}")
    if not np.isfinite(f0).all() or (f0 < 0).any():
        raise DataError(path, "F0 track holds negative or non-finite values")
    return f0.astype(np.float32, copy=False)


def log_f0_stats(tracks: Iterable[np.ndarray]) -> tuple[float | None, float | None, int]:
    """(mean, std, count) of log F0 over the voiced frames of ``tracks``; (None, None, 0) when none."""
    total, total_sq, count = 0.0, 0.0, 0
    for f0 in tracks:
        voiced = np.log(f0[f0 > 0].astype(np.float64))
        total += float(voiced.sum())
        total_sq += float(np.square(voiced).sum())
        count += int(voiced.size)
    if count == 0:
        return None, None, 0
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0)), count


def write_meta(root: str | os.PathLike[str], cfg: F0Config, *, num_utterances: int, log_f0_mean: float | None,
               log_f0_std: float | None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``root/meta.json`` atomically."""
    meta = {"format": F0_FORMAT, **cfg.to_dict(), "method": METHOD, "num_utterances": num_utterances,
            "log_f0_mean": log_f0_mean, "log_f0_std": log_f0_std, **(extra or {})}
    path = Path(root) / META_NAME
    atomic_write_json(path, meta)
    return path


class F0Store:
    """Read access to an F0 directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        meta_path = self.root / META_NAME
        if not meta_path.is_file():
            raise DataError(meta_path, "not an F0 directory: meta.json is missing (make one with "
                                       "`speechunits extract-f0 --data DATA --out DIR`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(meta_path, f"unreadable meta.json ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != F0_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DataError(meta_path, f"expected format {F0_FORMAT!r}, found {found!r}")
        try:
            self.hop_seconds = float(meta["hop_seconds"])
            self.floor_hz = float(meta["floor_hz"])
            self.ceiling_hz = float(meta["ceiling_hz"])
            self.num_utterances = int(meta["num_utterances"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(meta_path, f"missing or malformed field in meta.json ({err!r})") from err
        self.method = str(meta.get("method", METHOD))
        mean, std = meta.get("log_f0_mean"), meta.get("log_f0_std")
        self.log_f0_mean = float("nan") if mean is None else float(mean)
        self.log_f0_std = float("nan") if std is None else float(std)
        self.meta = meta

    @property
    def config(self) -> F0Config:
        return F0Config(self.hop_seconds, self.floor_hz, self.ceiling_hz)

    def path(self, utt_id: str) -> Path:
        return f0_path(self.root, utt_id)

    def get(self, utt_id: str) -> np.ndarray:
        """The track of ``utt_id`` (float32 Hz, 0 unvoiced); DataError naming the file when missing/unreadable."""
        path = self.path(utt_id)
        if check_utt_id(utt_id) is None and not path.is_file():
            raise DataError(path, f"no F0 track for utterance {utt_id!r} in this F0 directory (see "
                                  f"{self.root / 'bad_utts.txt'} if it exists)")
        return read_f0(path)

    def __contains__(self, utt_id: object) -> bool:
        return isinstance(utt_id, str) and check_utt_id(utt_id) is None and self.path(utt_id).is_file()

    def ids(self) -> list[str]:
        """Every stored utterance id, sorted."""
        return sorted(stored_ids(self.root))


__all__ = [
    "F0_FORMAT",
    "META_NAME",
    "F0Store",
    "check_utt_id",
    "f0_path",
    "log_f0_stats",
    "read_f0",
    "stored_ids",
    "write_f0",
    "write_meta",
]
