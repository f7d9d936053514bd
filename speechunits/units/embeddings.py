"""Per-token embeddings of a unit set: float16 ``.npy`` shards plus ``index.json``.

Layout (``docs/unit-format.md``)::

    embeddings/shard.JOB.npy    float16, shape (rows, embedding_dim), C order
    embeddings/index.json       {utt_id: ["shard.JOB.npy", row_start, row_end], ...}

Row ``row_start + i`` holds the vector of token ``i`` of the utterance, so
``row_end - row_start`` equals its token count. While a sharded job runs, each job writes its
own ``index.JOB.json``; :func:`speechunits.units.merge_shards` joins them into ``index.json``.
Shards are read memory-mapped (``np.load(mmap_mode="r")``), so opening a unit set is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.io_utils import atomic_path, load_npy
from speechunits.units.meta import read_meta

PathLike = str | os.PathLike[str]

EMB_DIR = "embeddings"
INDEX_NAME = "index.json"
DTYPE = np.dtype("<f2")


def shard_name(job: int) -> str:
    """File name (inside ``embeddings/``) of job ``job``'s shard."""
    return f"shard.{job}.npy"


def as_embedding_rows(emb: Any, num_tokens: int, dim: int | None, where: PathLike | None, utt: str) -> np.ndarray:
    """Check an (N, D) array of one utterance and convert it to C-ordered little-endian float16."""
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise UnitFormatError(where, f"utterance {utt!r}: embeddings must be 2-D (tokens, dim), found shape {arr.shape}")
    if arr.shape[0] != num_tokens:
        raise UnitFormatError(where, f"utterance {utt!r}: {arr.shape[0]} embedding rows for {num_tokens} tokens")
    if dim is not None and arr.shape[1] != dim:
        raise UnitFormatError(where, f"utterance {utt!r}: embedding dim {arr.shape[1]} != embedding_dim {dim}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UnitFormatError(where, f"utterance {utt!r}: embeddings must be real numbers, found {arr.dtype}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=DTYPE)
    if not np.isfinite(out).all():
        raise UnitFormatError(where, f"utterance {utt!r}: embeddings are non-finite in float16 "
                                     "(NaN/inf, or magnitude above 65504)")
    return out


class ShardSpool:
    """Appends float16 rows to a raw spool file; :meth:`finish` turns it into an ``.npy`` shard."""

    def __init__(self, raw_path: Path, dim: int, rows: int = 0) -> None:
        self.raw_path = raw_path
        self.dim = dim
        self.rows = rows
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(raw_path, "r+b" if raw_path.exists() else "w+b")
        self._f.truncate(rows * dim * DTYPE.itemsize)
        self._f.seek(0, os.SEEK_END)

    def append(self, rows: np.ndarray) -> tuple[int, int]:
        """Append rows; returns their ``(row_start, row_end)``."""
        start = self.rows
        self._f.write(rows.tobytes())
        self.rows += rows.shape[0]
        return start, self.rows

    def flush(self, fsync: bool = False) -> None:
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())

    def finish(self, npy_path: Path) -> None:
        """Write the ``.npy`` shard atomically (header + the spooled rows) and delete the spool."""
        self._f.flush()
        self._f.seek(0)
        with atomic_path(npy_path) as tmp:
            with open(tmp, "wb") as out:
                header = {"descr": DTYPE.str, "fortran_order": False, "shape": (self.rows, self.dim)}
                np.lib.format.write_array_header_1_0(out, header)
                while chunk := self._f.read(1 << 22):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        self.close(delete=True)

    def close(self, delete: bool = False) -> None:
        with contextlib.suppress(Exception):
            self._f.close()
        if delete:
            with contextlib.suppress(FileNotFoundError):
                self.raw_path.unlink()


def raw_rows(raw_path: Path, dim: int) -> int:
    """Number of complete rows in a raw spool file."""
    return raw_path.stat().st_size // (dim * DTYPE.itemsize) if raw_path.exists() else 0


def read_index_file(path: PathLike) -> dict[str, tuple[str, int, int]]:
    """Read and type-check an embeddings index (``index.json`` or ``index.JOB.json``)."""
    path = Path(path)
    if not path.is_file():
        raise UnitFormatError(path, "missing embeddings index")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UnitFormatError(path, f"unreadable embeddings index ({err})") from None
    if not isinstance(obj, dict):
        raise UnitFormatError(path, f"expected a JSON object mapping id -> [shard, row_start, row_end], found {type(obj).__name__}")
    out: dict[str, tuple[str, int, int]] = {}
    for utt, entry in obj.items():
        ok = (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
              and all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:])
              and 0 <= entry[1] <= entry[2])
        if not ok:
            raise UnitFormatError(path, f"utterance {utt!r}: index entry must be [shard, row_start, row_end] with "
                                        f"0 <= row_start <= row_end, found {entry!r}")
        out[utt] = (entry[0], entry[1], entry[2])
    return out


def open_shard(path: Path, dim: int | None = None) -> np.ndarray:
    """Memory-map one shard; raises UnitFormatError if missing, truncated or of the wrong dtype/shape."""
    if not path.is_file():
        raise UnitFormatError(path, "missing embeddings shard")
    arr = load_npy(path, UnitFormatError, "embeddings shard", mmap_mode="r")
    if arr.dtype != DTYPE or arr.ndim != 2:
        raise UnitFormatError(path, f"embeddings shard must be float16 (rows, dim), found {arr.dtype} {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise UnitFormatError(path, f"embeddings shard has dim {arr.shape[1]}, meta.json says embedding_dim {dim}")
    return arr


class EmbeddingStore:
    """Random and sequential access to a unit set's embeddings (shards opened lazily, memory-mapped)."""

    def __init__(self, unit_dir: PathLike, dim: int | None = None) -> None:
        self.dir = Path(unit_dir) / EMB_DIR
        self.index_path = self.dir / INDEX_NAME
        self.index = read_index_file(self.index_path)
        self.dim = dim
        self._shards: dict[str, np.ndarray] = {}

    def shard(self, name: str) -> np.ndarray:
        if name not in self._shards:
            if Path(name).name != name:
                raise UnitFormatError(self.index_path, f"shard name {name!r} must be a plain file name in embeddings/")
            self._shards[name] = open_shard(self.dir / name, self.dim)
        return self._shards[name]

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def get(self, utt_id: str) -> np.ndarray:
        """The (N, D) float16 rows of one utterance (a read-only memory-mapped view)."""
        if utt_id not in self.index:
            raise UnitFormatError(self.index_path, f"no embeddings for utterance {utt_id!r}")
        name, start, end = self.index[utt_id]
        arr = self.shard(name)
        if end > arr.shape[0]:
            raise UnitFormatError(self.dir / name, f"utterance {utt_id!r}: rows [{start}, {end}) are beyond the "
                                                   f"shard's {arr.shape[0]} rows (truncated shard?)")
        return arr[start:end]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for utt_id in sorted(self.index):
            yield utt_id, self.get(utt_id)


def _declared_dim(unit_dir: PathLike) -> int | None:
    """meta.json's ``embedding_dim``: what every shard of the set must have."""
    return read_meta(unit_dir).embedding_dim


def read_embeddings(unit_dir: PathLike, utt_id: str) -> np.ndarray:
    """The (N, D) float16 embeddings of one utterance (memory-mapped view); D is meta.json's
    ``embedding_dim``."""
    return EmbeddingStore(unit_dir, _declared_dim(unit_dir)).get(utt_id)


def iter_embeddings(unit_dir: PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """``(utt_id, (N, D) float16)`` for every utterance, in id order; D is meta.json's ``embedding_dim``."""
    yield from EmbeddingStore(unit_dir, _declared_dim(unit_dir))
