"""Packed token data: every utterance's LM tokens in one memory-mapped array.

A packed set is four files sharing a prefix (``exp/lm/data/train``)::

    train.bin        the tokens of all sequences back to back (uint16 when every id fits, else uint32)
    train.idx        int64 offsets, num_sequences + 1 of them (numpy .npy format): sequence i is
                     bin[idx[i]:idx[i+1]]
    train.items.tsv  "<utterance id>\\t<audio seconds>" per sequence, in order
    train.json       what the tokens are: format, dtype, counts, vocab_size, and the producer
                     block (unit set, its meta hash, dedup, BPE model) that the LM refuses to mix

The JSON is written last, so a set without it is incomplete; every file goes through an atomic
rename, so a killed packer leaves either the old set or none. Readers check the sizes against
the JSON, so a truncated ``.bin`` or ``.idx`` is an error that names the file, not garbage
tokens. Memory mapping keeps a reader's cost independent of the corpus size: a training job
touches only the sequences it batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import UnitFormatError
from speechunits.io_utils import atomic_path, atomic_write_json, load_npy

__all__ = ["FORMAT", "PackedTokens", "packed_files", "write_packed"]

FORMAT = "speechunits.lm.packed/1"
PathLike = str | os.PathLike[str]


def packed_files(prefix: PathLike) -> dict[str, Path]:
    """The four files of the packed set at ``prefix`` by role (bin, idx, items, json)."""
    p = Path(prefix)
    return {role: p.with_name(p.name + suffix)
            for role, suffix in (("bin", ".bin"), ("idx", ".idx"), ("items", ".items.tsv"), ("json", ".json"))}


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def write_packed(prefix: PathLike, ids: Sequence[str], sequences: Iterable[np.ndarray], seconds: Sequence[float],
                 *, vocab_size: int, producer: dict[str, Any]) -> dict[str, Any]:
    """Write a packed set; returns its JSON header.

    ``sequences[i]`` holds the integer tokens of utterance ``ids[i]`` (each ``0 <= t < vocab_size``)
    and ``seconds[i]`` its audio length. ``producer`` is free-form provenance kept in the header
    (the packer puts the unit set's meta hash there).
    """
    files = packed_files(prefix)
    files["bin"].parent.mkdir(parents=True, exist_ok=True)
    dtype = _dtype_for(vocab_size)
    if len(ids) != len(seconds):
        raise ValueError(f"{len(ids)} ids but {len(seconds)} durations")
    offsets = [0]
    with atomic_path(files["bin"]) as tmp, open(tmp, "wb") as f:
        for utt_id, seq in zip(ids, sequences, strict=True):
            arr = np.asarray(seq)
            if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= vocab_size)):
                raise ValueError(f"{utt_id}: tokens must be a 1-d array of ids in [0, {vocab_size})")
            f.write(arr.astype(dtype).tobytes())
            offsets.append(offsets[-1] + int(arr.size))
    with atomic_path(files["idx"]) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))
    with atomic_path(files["items"]) as tmp:
        tmp.write_text("".join(f"{i}\t{s:.6f}\n" for i, s in zip(ids, seconds)), encoding="utf-8")
    header = {"format": FORMAT, "dtype": dtype.name, "num_sequences": len(ids), "num_tokens": offsets[-1],
              "audio_seconds": round(float(sum(seconds)), 6), "vocab_size": int(vocab_size), "producer": producer}
    atomic_write_json(files["json"], header)
    return header


@dataclass(frozen=True)
class _Item:
    id: str
    seconds: float


class PackedTokens:
    """Read-only view of a packed set: ``len``, ``tokens[i] -> int64 array``, ids, durations, header."""

    def __init__(self, prefix: PathLike) -> None:
        self.files = packed_files(prefix)
        js = self.files["json"]
        if not js.is_file():
            raise UnitFormatError(js, "no packed-set header (the packer did not finish, or the prefix is wrong)")
        try:
            self.header: dict[str, Any] = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UnitFormatError(js, f"not valid JSON ({err.msg})", err.lineno) from None
        if self.header.get("format") != FORMAT:
            raise UnitFormatError(js, f"format must be {FORMAT!r}, found {self.header.get('format')!r}")
        n, total = int(self.header["num_sequences"]), int(self.header["num_tokens"])
        self.dtype = np.dtype(self.header["dtype"])
        self.offsets = load_npy(self.files["idx"], UnitFormatError, "offsets")
        if self.offsets.shape != (n + 1,) or int(self.offsets[-1]) != total or (np.diff(self.offsets) < 0).any():
            raise UnitFormatError(self.files["idx"], f"expected {n + 1} non-decreasing offsets ending at {total}, "
                                                     f"found shape {self.offsets.shape}: truncated or from another set")
        size = self.files["bin"].stat().st_size if self.files["bin"].is_file() else -1
        if size != total * self.dtype.itemsize:
            raise UnitFormatError(self.files["bin"], f"expected {total * self.dtype.itemsize} bytes "
                                                     f"({total} {self.dtype.name} tokens), found {size}: truncated?")
        self._bin = (np.memmap(self.files["bin"], dtype=self.dtype, mode="r", shape=(total,)) if total
                     else np.zeros(0, self.dtype))
        self.items = self._read_items(n)

    def _read_items(self, n: int) -> list[_Item]:
        path = self.files["items"]
        items = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise UnitFormatError(path, f"unreadable ({err.strerror})") from None
        for lineno, line in enumerate(lines, start=1):
            fields = line.split("\t")
            if len(fields) != 2:
                raise UnitFormatError(path, "expected '<id>\\t<seconds>'", lineno)
            try:
                items.append(_Item(fields[0], float(fields[1])))
            except ValueError:
                raise UnitFormatError(path, f"seconds must be a number, found {fields[1]!r}", lineno) from None
        if len(items) != n:
            raise UnitFormatError(path, f"expected {n} items, found {len(items)}")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._bin[int(self.offsets[i]):int(self.offsets[i + 1])], dtype=np.int64)

    @property
    def ids(self) -> list[str]:
        return [it.id for it in self.items]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence (int64)."""
        return np.diff(self.offsets)

    @property
    def vocab_size(self) -> int:
        return int(self.header["vocab_size"])

    @property
    def producer(self) -> dict[str, Any]:
        return dict(self.header.get("producer") or {})

    @property
    def num_tokens(self) -> int:
        return int(self.header["num_tokens"])

    @property
    def audio_seconds(self) -> float:
        return float(self.header["audio_seconds"])
