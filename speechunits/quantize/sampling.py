"""Deterministic sampling of segment embeddings from a unit set (the k-means training data).

Large corpora hold far more token embeddings than k-means needs (or than fit in memory).
Two samplers, both deterministic for a seed and both reading the memory-mapped shards one
utterance at a time, so memory stays at ``max_samples x D``:

* ``uniform`` (default): the row counts are known from ``embeddings/index.json``, so draw
  ``max_samples`` global row numbers without replacement, then gather them in one pass.
* ``reservoir``: one streaming pass (Algorithm R), for any iterable of ``(N, D)`` blocks whose
  total size is not known in advance (e.g. frame features produced on the fly).

:func:`embeddings_hash` identifies the embeddings a codebook was trained on; it covers the
index and every shard (not ``units.jsonl``, so quantizing a unit set in place keeps it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechunits.errors import ConfigError, UnitFormatError
from speechunits.io_utils import sha256_file, sha256_json
from speechunits.units.embeddings import EMB_DIR, INDEX_NAME, EmbeddingStore
from speechunits.units.meta import read_meta

PathLike = str | os.PathLike[str]
METHODS = ("uniform", "reservoir")


@dataclass
class Sample:
    """Sampled rows ``(M, D)`` (float16, as stored) and where they came from."""

    vectors: np.ndarray
    total: int
    num_utterances: int
    method: str
    seed: int


def _check(max_samples: int | None, method: str) -> None:
    if max_samples is not None and max_samples < 1:
        raise ConfigError(None, f"max_samples must be >= 1 (or None for all), found {max_samples}")
    if method not in METHODS:
        raise ConfigError(None, f"sampling method must be one of {list(METHODS)}, found {method!r}")


def open_store(unit_dir: PathLike) -> EmbeddingStore:
    """The embeddings of a unit set; UnitFormatError if it has none."""
    meta = read_meta(unit_dir)
    if meta.embedding_dim is None or not (Path(unit_dir) / EMB_DIR / INDEX_NAME).is_file():
        raise UnitFormatError(Path(unit_dir) / EMB_DIR / INDEX_NAME,
                              "this unit set has no embeddings (embedding_dim is null or the index is missing); "
                              "k-means needs the per-token vectors")
    return EmbeddingStore(unit_dir, meta.embedding_dim)


def reservoir_sample(blocks: Iterable[np.ndarray], max_samples: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Uniform sample of ``max_samples`` rows from a stream of ``(n_i, D)`` blocks (Algorithm R).

    Returns ``(rows in stream order of their slot, total rows seen)``; fewer than
    ``max_samples`` rows seen means all of them are returned, in order.
    """
    _check(max_samples, "reservoir")
    rng = np.random.default_rng(seed)
    res: np.ndarray | None = None
    seen = 0
    for block in blocks:
        block = np.asarray(block)
        if block.ndim != 2:
            raise ConfigError(None, f"reservoir_sample: blocks must be 2-D, found shape {block.shape}")
        if res is None:
            res = np.empty((max_samples, block.shape[1]), dtype=block.dtype)
        n = block.shape[0]
        fill = min(n, max(0, max_samples - seen))
        res[seen:seen + fill] = block[:fill]
        if fill < n:
            t = np.arange(seen + fill, seen + n)  # global index of each remaining row
            slots = rng.integers(0, t + 1)  # row t replaces slot j with probability 1/(t+1) per slot
            keep = slots < max_samples
            # sequential semantics: later rows overwrite earlier ones in the same slot
            res[slots[keep]] = block[fill:][keep]
        seen += n
    if res is None:
        return np.zeros((0, 0), dtype=np.float16), 0
    return res[:min(seen, max_samples)], seen


def sample_embeddings(
    unit_dir: PathLike, max_samples: int | None = None, *, seed: int = 0, method: str = "uniform",
    progress: bool = True,
) -> Sample:
    """Up to ``max_samples`` token embeddings of a unit set (all of them when ``None`` or fewer exist)."""
    _check(max_samples, method)
    store = open_store(unit_dir)
    ids = sorted(store.index)
    counts = np.array([store.index[u][2] - store.index[u][1] for u in ids], dtype=np.int64)
    total = int(counts.sum())
    dim = int(store.dim or 0)
    if total == 0:
        return Sample(np.zeros((0, dim), dtype=np.float16), 0, len(ids), method, seed)
    bar = tqdm(ids, desc="sampling embeddings", unit="utt", disable=not progress, leave=False)
    if max_samples is None or max_samples >= total:
        out = np.empty((total, dim), dtype=np.float16)
        pos = 0
        for u in bar:
            rows = store.get(u)
            out[pos:pos + rows.shape[0]] = rows
            pos += rows.shape[0]
        return Sample(out, total, len(ids), method, seed)
    if method == "reservoir":
        vecs, seen = reservoir_sample((store.get(u) for u in bar), max_samples, seed)
        return Sample(vecs, seen, len(ids), method, seed)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=max_samples, replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out = np.empty((max_samples, dim), dtype=np.float16)
    lo = 0
    for i, u in enumerate(bar):
        hi = int(np.searchsorted(picks, offsets[i + 1], side="left"))
        if hi > lo:
            out[lo:hi] = store.get(u)[picks[lo:hi] - offsets[i]]
        lo = hi
    return Sample(out, total, len(ids), method, seed)


def embeddings_hash(unit_dir: PathLike) -> str:
    """SHA-256 over the embeddings index and every shard it references (content, not mtimes)."""
    store = open_store(unit_dir)
    shards = sorted({name for name, _s, _e in store.index.values()})
    return sha256_json({
        "index": sha256_file(store.index_path),
        "shards": {name: sha256_file(store.dir / name) for name in shards},
    })
