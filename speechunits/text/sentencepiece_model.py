"""Loading a trained SentencePiece model, for every component that tokenizes with one (SLU targets,
BPE over units): one place turns sentencepiece's bare ``OSError``/``RuntimeError`` into an error
that names the file."""

from __future__ import annotations

import os

import sentencepiece as spm

from speechunits.errors import CheckpointError


def load_sentencepiece(path: str | os.PathLike[str]) -> spm.SentencePieceProcessor:
    """The model at ``path``; CheckpointError naming it when it is missing or not a SentencePiece model."""
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(os.fspath(path))
    except (OSError, RuntimeError) as err:
        raise CheckpointError(path, f"cannot load a SentencePiece model ({err})") from None
    return sp
