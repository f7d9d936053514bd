"""The judge's corpora: a data directory (``manifest.jsonl`` with id/audio/text, or a Kaldi
data dir), or a ``.jsonl`` manifest; every utterance must have a transcript."""

from __future__ import annotations

import os
from pathlib import Path

from speechunits.data.jsonl import load_manifest, read_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

MANIFEST_NAME = "manifest.jsonl"


def manifest_source(data: str | os.PathLike[str]) -> Path:
    """The file a data argument is read from: ``DIR/manifest.jsonl`` when present, else
    ``data`` itself (a Kaldi data dir or a ``.jsonl`` file)."""
    path = Path(data)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return path / MANIFEST_NAME
    return path


def read_transcribed(data: str | os.PathLike[str]) -> list[Utterance]:
    """Utterances of ``data``; ManifestError naming the utterance and file when one has no
    (or an empty) transcript."""
    source = manifest_source(data)
    utts = read_jsonl_manifest(source) if source.suffix == ".jsonl" else load_manifest(source, require_text=True)
    for utt in utts:
        if utt.text is None or not utt.text.strip():
            what = "no transcript ('text')" if utt.text is None else "an empty transcript"
            raise ManifestError(source, f"utterance {utt.id!r} has {what}; the judge needs a transcript for every utterance")
    return utts
