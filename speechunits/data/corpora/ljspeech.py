"""LJSpeech-1.1: ``<root>/metadata.csv`` + ``<root>/wavs/<id>.wav``.

``metadata.csv`` has one ``id|transcription|normalized transcription`` line per clip,
pipe-separated with no quoting (quotes inside texts are literal). The single speaker is
``"LJ"``; the text is the normalized transcription and the raw one is kept in
``extra["raw_text"]``.

The corpus has no official split. Besides ``all``, this loader offers a chapter-disjoint one
(clip ids are ``LJ<chapter>-<clip>``): ``test`` is chapter LJ001 (186 clips in LJSpeech-1.1),
``valid`` is chapter LJ002 (338 clips) and ``train`` is every other chapter (LJ003-LJ050),
so no test sentence shares a book chapter with the training data.
"""

from __future__ import annotations

import os
from pathlib import Path

from speechunits.data.corpora.common import require_corpus_dir, require_file
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

SPLITS = ("all", "train", "valid", "test")
HELD_OUT_CHAPTERS = {"test": "LJ001", "valid": "LJ002"}
"""The chapters of the ``test`` and ``valid`` splits; ``train`` is all other chapters."""
SPEAKER = "LJ"
LAYOUT = "<root>/metadata.csv (id|transcription|normalized transcription) and <root>/wavs/<id>.wav"


def read_metadata(path: Path) -> dict[str, tuple[str, str, int]]:
    """metadata.csv -> {id: (raw text, normalized text, line)}, malformed lines rejected."""
    out: dict[str, tuple[str, str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) != 3:
                raise ManifestError(
                    path, f"expected 3 '|'-separated fields (id|transcription|normalized), found {len(fields)}", lineno
                )
            utt_id, text, normalized = (x.strip() for x in fields)
            if not utt_id or any(c.isspace() for c in utt_id):
                raise ManifestError(path, f"expected a clip id without spaces in field 1, found {fields[0]!r}", lineno)
            if not (normalized or text):
                raise ManifestError(path, f"clip {utt_id!r} has an empty transcription", lineno)
            if utt_id in out:
                raise ManifestError(path, f"duplicate clip id {utt_id!r} (first on line {out[utt_id][2]})", lineno)
            out[utt_id] = (text, normalized or text, lineno)
    return out


def load_ljspeech(root: PathLike, split: str = "all") -> list[Utterance]:
    """LJSpeech clips of ``split`` (``all``, or the chapter split ``train``/``valid``/``test``), sorted by id.

    Raises ManifestError for a missing corpus directory, metadata.csv or wavs/, a wav
    without a metadata line, a metadata line without a wav and malformed lines.
    """
    base = require_corpus_dir(root, "LJSpeech", LAYOUT)
    if split not in SPLITS:
        raise ManifestError(base, f"LJSpeech splits are {', '.join(SPLITS)} (test = chapter LJ001, valid = LJ002, "
                                  f"train = the rest); found split {split!r}")
    metadata = require_file(base / "metadata.csv", "LJSpeech", "metadata.csv (id|transcription|normalized)")
    wav_dir = base / "wavs"
    if not wav_dir.is_dir():
        raise ManifestError(wav_dir, f"expected the LJSpeech wavs/ directory; layout {LAYOUT}")
    rows = read_metadata(metadata)
    wavs = {p.stem: p for p in wav_dir.glob("*.wav")}
    orphans = sorted(set(wavs) - set(rows))
    if orphans:
        raise ManifestError(wavs[orphans[0]], f"audio file has no line in {metadata}")
    utts = []
    for utt_id, (text, normalized, lineno) in sorted(rows.items()):
        if utt_id not in wavs:
            raise ManifestError(metadata, f"clip {utt_id!r} has no audio file {wav_dir / (utt_id + '.wav')}", lineno)
        utts.append(
            Utterance(id=utt_id, audio=str(wavs[utt_id]), text=normalized, speaker=SPEAKER, extra={"raw_text": text})
        )
    if not utts:
        raise ManifestError(metadata, "metadata.csv lists no clips")
    if split == "all":
        return utts
    chosen = [u for u in utts if _in_split(u.id, split)]
    if not chosen:
        raise ManifestError(metadata, f"no clip of split {split!r} (chapter ids {sorted(HELD_OUT_CHAPTERS.values())} "
                                      "are held out for test/valid)")
    return chosen


def _in_split(utt_id: str, split: str) -> bool:
    chapter = utt_id.split("-", 1)[0]
    if split == "train":
        return chapter not in HELD_OUT_CHAPTERS.values()
    return chapter == HELD_OUT_CHAPTERS[split]
