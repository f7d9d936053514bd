"""The judge's corpora: a data directory (``manifest.jsonl`` with id/audio/text, or a Kaldi
data dir), or a ``.jsonl`` manifest; every utterance must have a transcript."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechunits.audio import load_audio
from speechunits.data.jsonl import load_manifest, read_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError, ManifestError

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


def load_waves(utts: Sequence[Utterance], sample_rate: int, desc: str = "load audio",
               progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Waveforms at ``sample_rate`` by id, and the reason per id of the audio that could not
    be read (skipped)."""
    waves: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for utt in tqdm(utts, desc=desc, unit="utt", file=sys.stderr, disable=not progress or None, leave=False):
        try:
            waves[utt.id] = load_audio(utt.audio, target_sr=sample_rate)
        except AudioError as err:
            bad[utt.id] = str(err)
    return waves, bad


def report_bad(bad: dict[str, str], what: str, limit: int = 5) -> None:
    """One stderr line per skipped utterance (the first ``limit``) and a count."""
    if not bad:
        return
    for utt_id, reason in list(bad.items())[:limit]:
        print(f"{what}: skipped {utt_id}: {reason}", file=sys.stderr)
    if len(bad) > limit:
        print(f"{what}: ... and {len(bad) - limit} more", file=sys.stderr)
    print(f"{what}: {len(bad)} utterance(s) with unusable audio skipped", file=sys.stderr)
