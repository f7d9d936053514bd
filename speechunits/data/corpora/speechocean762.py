"""speechocean762: ``<root>/{train,test}/`` Kaldi data dirs and ``<root>/WAVE/SPEAKER<spk>/<utt>.WAV``.

The corpus ships its splits as Kaldi data dirs (``wav.scp``, ``text``, ``utt2spk``,
``spk2utt``, ``spk2age``, ``spk2gender``) whose ``wav.scp`` paths are relative to the corpus
root (``WAVE/SPEAKER0003/000030012.WAV``), so they are read with the toolkit's Kaldi reader
(its validation and ``file:line`` errors) and resolved against ``<root>``. The audio is 16 kHz
mono read speech of Mandarin L1 speakers of English; the pronunciation scores of
``resource/scores.json`` are not read here.
"""

from __future__ import annotations

import os
from pathlib import Path

from speechunits.data.corpora.common import describe_missing_split, require_corpus_dir, visible_children
from speechunits.data.kaldi import read_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

SPLITS = ("train", "test")
LAYOUT = "<root>/{train,test}/{wav.scp,text,utt2spk,spk2utt} with wav.scp paths relative to <root> (WAVE/...)"


def load_speechocean762(root: PathLike, split: str = "test") -> list[Utterance]:
    """The utterances of ``split`` sorted by id, with absolute audio paths that exist.

    ManifestError for a missing corpus or split directory, a malformed data dir (from the Kaldi
    reader, with file:line) and a ``wav.scp`` entry whose audio file is not there.
    """
    base = require_corpus_dir(root, "speechocean762", LAYOUT)
    if split not in SPLITS:
        raise ManifestError(base, f"speechocean762 splits are {', '.join(SPLITS)}; found split {split!r}")
    split_dir = base / split
    if not split_dir.is_dir():
        raise describe_missing_split(split_dir, split, "speechocean762",
                                     [p.name for p in visible_children(base) if p.is_dir() and p.name in SPLITS])
    utts = read_kaldi_dir(split_dir, audio_root=base)
    for utt in utts:
        if not Path(utt.audio).is_file():
            raise ManifestError(split_dir / "wav.scp", f"audio of utterance {utt.id!r} not found: {utt.audio}")
    return utts
