"""SentencePiece BPE over unit ids: frequent unit n-grams become single LM tokens.

Unit id ``u`` is written as the one code point ``chr(0xF0000 + u)`` (Supplementary Private
Use Area-A), so a unit sequence is a string without whitespace, digits or script changes,
and SentencePiece's identity normalization leaves it untouched (no dummy prefix, no
whitespace handling). Every unit id ``0..U-1`` of the unit vocabulary is a piece, even one
the training set never uses (those are user-defined symbols), so *any* sequence over the
vocabulary encodes without ``<unk>`` and decodes back exactly.

SentencePiece always reserves ``<unk>`` at piece 0; it can never be produced here, so the LM
token of piece ``p`` is ``p - 1``: :attr:`UnitBPE.vocab_size` counts real pieces only and
token ids are ``0..vocab_size-1``. ``vocab_size`` is a hard limit: asking for more pieces than
the data supports is a ConfigError rather than a silently smaller vocabulary, so the number
in a config is the number the LM gets.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import atomic_write_bytes, sha256_file
from speechunits.text.sentencepiece_model import load_sentencepiece

__all__ = ["MAX_UNITS", "UNIT_BASE", "UnitBPE", "train_bpe", "units_to_text"]

PathLike = str | os.PathLike[str]

UNIT_BASE = 0xF0000
MAX_UNITS = 0xFFFFE - UNIT_BASE  # plane 15 private use, without its two noncharacters


def units_to_text(units: np.ndarray | Iterable[int]) -> str:
    """The string of private-use code points that stands for a unit sequence."""
    arr = np.asarray(units, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= MAX_UNITS):
        raise ConfigError(None, f"unit ids must be in [0, {MAX_UNITS}) for BPE, found {int(arr.min())}..{int(arr.max())}")
    return "".join(map(chr, (arr + UNIT_BASE).tolist()))


def train_bpe(sequences: Iterable[np.ndarray], vocab_size: int, model_prefix: PathLike,
              *, unit_vocab_size: int | None = None) -> UnitBPE:
    """Train a BPE model of exactly ``vocab_size`` tokens on unit sequences; writes
    ``<model_prefix>.model`` atomically and returns it loaded.

    ``unit_vocab_size`` (default: largest id seen + 1) is the unit vocabulary whose every id
    must stay encodable; ``vocab_size`` must exceed it (the merges are the rest).
    """
    texts = [units_to_text(s) for s in sequences]
    seen = {ord(c) - UNIT_BASE for t in texts for c in set(t)}
    if not seen:
        raise ConfigError(None, "train_bpe needs at least one non-empty unit sequence")
    units = int(unit_vocab_size) if unit_vocab_size is not None else max(seen) + 1
    if max(seen) >= units:
        raise ConfigError(None, f"unit id {max(seen)} is outside the unit vocabulary of {units}")
    if vocab_size <= units:
        raise ConfigError(None, f"BPE vocab_size {vocab_size} must exceed the {units} unit ids it starts from")
    unseen = [chr(UNIT_BASE + u) for u in range(units) if u not in seen]
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([t for t in texts if t]), model_writer=buf, vocab_size=vocab_size + 1,
            model_type="bpe", hard_vocab_limit=True, character_coverage=1.0, user_defined_symbols=unseen,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, normalization_rule_name="identity",
            add_dummy_prefix=False, remove_extra_whitespaces=False, split_by_whitespace=False,
            max_sentence_length=max(4192, 4 * max(map(len, texts)) + 16), max_sentencepiece_length=16,
            minloglevel=2, num_threads=1)
    except RuntimeError as err:
        raise ConfigError(None, f"BPE training with vocab_size {vocab_size} failed: {err}") from None
    path = Path(f"{os.fspath(model_prefix)}.model")
    atomic_write_bytes(path, buf.getvalue())
    return UnitBPE(path)


class UnitBPE:
    """A trained unit BPE model: ``encode(units) -> tokens``, ``decode(tokens) -> units`` (exact)."""

    def __init__(self, model_path: PathLike) -> None:
        self.path = Path(model_path)
        self.sp = load_sentencepiece(self.path)
        pieces: list[np.ndarray] = []
        for p in range(1, self.sp.GetPieceSize()):
            text = self.sp.IdToPiece(p)
            codes = np.fromiter((ord(c) - UNIT_BASE for c in text), dtype=np.int64, count=len(text))
            if self.sp.IsUnknown(p) or codes.size == 0 or (codes < 0).any() or (codes >= MAX_UNITS).any():
                raise CheckpointError(self.path, f"piece {p} ({text!r}) is not a unit sequence: not a unit BPE model")
            pieces.append(codes)
        self._pieces = pieces
        self.unit_vocab_size = 1 + max((int(c.max()) for c in pieces if c.size == 1), default=-1)
        self.sha256 = sha256_file(self.path)

    @property
    def vocab_size(self) -> int:
        """Number of BPE tokens (ids ``0..vocab_size-1``)."""
        return len(self._pieces)

    def encode(self, units: np.ndarray | Iterable[int]) -> np.ndarray:
        """Unit ids -> BPE token ids (int64)."""
        arr = np.asarray(units, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.unit_vocab_size):
            raise ConfigError(self.path, f"unit ids {int(arr.min())}..{int(arr.max())} are outside this BPE model's "
                                         f"unit vocabulary of {self.unit_vocab_size}")
        return np.asarray(self.sp.EncodeAsIds(units_to_text(arr)), dtype=np.int64) - 1

    def decode(self, pieces: np.ndarray | Iterable[int]) -> np.ndarray:
        """BPE token ids -> unit ids (int64); the exact inverse of :meth:`encode`."""
        arr = np.asarray(pieces, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ConfigError(self.path, f"token ids must be in [0, {self.vocab_size}), found "
                                         f"{int(arr.min())}..{int(arr.max())}")
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self._pieces[int(p)] for p in arr])
