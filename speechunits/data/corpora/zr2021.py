"""ZeroSpeech 2021 lexical (sWUGGY) and syntactic (sBLIMP) probes: ``<root>/<task>/<dev|test>/``.

The official release holds ``<root>/{lexical,syntactic}/{dev,test}/<filename>.wav``; the dev
sets also hold ``gold.csv`` (lexical columns ``id,filename,word,phones,length,frequency,
correct,voice``; syntactic ``id,filename,type,subtype,correct,voice,transcription``), the test
sets do not. A row is one file; the two rows with the same ``id`` and ``voice`` are a minimal
pair, ``correct`` 1 for the real word / grammatical sentence and 0 for the other. The
synthetic probes of ``speechunits synth-corpus --layout zr2021`` are written in the same
layout, so this one reader serves both.

Utterance ids are the filenames (the ids an LM's scores are keyed by, and the first field of a
ZeroSpeech submission line). With gold, the text is the word (or non-word) or the
transcription, the speaker the voice, and ``extra`` holds the pair id, ``correct`` ("1"/"0": Kaldi labels are strings) and the
syntactic type/subtype; without gold, only the audio is known.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from speechunits.data.corpora.common import describe_missing_split, require_corpus_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

TASKS = ("lexical", "syntactic")
SPLITS = ("lexical/dev", "lexical/test", "syntactic/dev", "syntactic/test")
LAYOUT = "<root>/{lexical,syntactic}/{dev,test}/<filename>.wav, with gold.csv in the dev sets"
GOLD_COLUMNS: dict[str, tuple[str, ...]] = {
    "lexical": ("id", "filename", "word", "phones", "length", "frequency", "correct", "voice"),
    "syntactic": ("id", "filename", "type", "subtype", "correct", "voice", "transcription"),
}


@dataclass(frozen=True)
class GoldItem:
    """One row of a gold.csv: a file, its pair (``id``, ``voice``) and whether it is the correct member."""

    id: str
    filename: str
    correct: bool
    voice: str
    text: str
    """The word / non-word (lexical) or the transcription (syntactic)."""
    type: str | None = None
    subtype: str | None = None
    line: int = 0


def read_gold(path: PathLike, task: str, *, audio_dir: PathLike | None = None) -> list[GoldItem]:
    """The rows of a ZeroSpeech 2021 ``gold.csv`` of ``task`` (``lexical`` or ``syntactic``), in file order.

    ManifestError (file:line) for a missing column, an empty field, a ``correct`` other than
    0/1, a repeated filename, an (id, voice) that is not exactly one correct and one incorrect
    file, and, when ``audio_dir`` is given, a row whose ``<filename>.wav`` is not there.
    """
    path = Path(path)
    if task not in TASKS:
        raise ManifestError(path, f"ZeroSpeech 2021 probe task must be one of {', '.join(TASKS)}, found {task!r}")
    if not path.is_file():
        raise ManifestError(path, f"expected the {task} gold.csv here, found {'nothing' if not path.exists() else 'a directory'}")
    columns = GOLD_COLUMNS[task]
    items: list[GoldItem] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(path, f"{task} gold.csv lacks column(s) {', '.join(missing)}; expected "
                                      f"{','.join(columns)}, found {','.join(reader.fieldnames or []) or 'no header'}", 1)
        for row in reader:
            lineno = reader.line_num
            for col in ("id", "filename", "correct", "voice"):
                if not (row.get(col) or "").strip():
                    raise ManifestError(path, f"empty {col!r} field", lineno)
            if row["correct"].strip() not in ("0", "1"):
                raise ManifestError(path, f"'correct' must be 1 or 0, found {row['correct']!r}", lineno)
            text = row["word"] if task == "lexical" else row["transcription"]
            items.append(GoldItem(
                id=row["id"].strip(), filename=row["filename"].strip(), correct=row["correct"].strip() == "1",
                voice=row["voice"].strip(), text=(text or "").strip(),
                type=row["type"].strip() if task == "syntactic" else None,
                subtype=row["subtype"].strip() if task == "syntactic" else None, line=lineno,
            ))
    if not items:
        raise ManifestError(path, f"{task} gold.csv lists no files")
    _check_pairs(path, items)
    if audio_dir is not None:
        for item in items:
            wav = Path(audio_dir) / f"{item.filename}.wav"
            if not wav.is_file():
                raise ManifestError(path, f"file {item.filename!r} has no audio {wav}", item.line)
    return items


def _check_pairs(path: Path, items: list[GoldItem]) -> None:
    seen: dict[str, int] = {}
    pairs: dict[tuple[str, str], list[GoldItem]] = defaultdict(list)
    for item in items:
        if item.filename in seen:
            raise ManifestError(path, f"filename {item.filename!r} repeated (first on line {seen[item.filename]})",
                                item.line)
        seen[item.filename] = item.line
        pairs[(item.id, item.voice)].append(item)
    for (pair_id, voice), members in pairs.items():
        if sorted(m.correct for m in members) != [False, True]:
            lines = ", ".join(str(m.line) for m in members)
            raise ManifestError(path, f"id {pair_id!r} voice {voice!r} is unpaired: expected one correct and one "
                                      f"incorrect file, found {len(members)} row(s) with correct="
                                      f"{[int(m.correct) for m in members]} (lines {lines})", members[0].line)


def load_zr2021(root: PathLike, split: str) -> list[Utterance]:
    """The files of ``split`` (``lexical/dev``, ``lexical/test``, ``syntactic/dev``, ``syntactic/test``), sorted by id."""
    base = require_corpus_dir(root, "ZeroSpeech 2021", LAYOUT)
    if split not in SPLITS:
        raise ManifestError(base, f"ZeroSpeech 2021 splits are {', '.join(SPLITS)}; found split {split!r}")
    task = split.split("/")[0]
    split_dir = base / split
    if not split_dir.is_dir():
        present = [s for s in SPLITS if (base / s).is_dir()]
        raise describe_missing_split(split_dir, split, "ZeroSpeech 2021", present)
    wavs = {p.stem: p for p in split_dir.glob("*.wav")}
    gold_path = split_dir / "gold.csv"
    if not gold_path.is_file():
        if not wavs:
            raise ManifestError(split_dir, f"no .wav files; expected the layout {LAYOUT}")
        return [Utterance(id=name, audio=str(wav)) for name, wav in sorted(wavs.items())]
    items = read_gold(gold_path, task, audio_dir=split_dir)
    listed = {item.filename for item in items}
    orphans = sorted(set(wavs) - listed)
    if orphans:
        raise ManifestError(wavs[orphans[0]], f"audio file has no row in {gold_path}")
    utts = []
    for item in sorted(items, key=lambda i: i.filename):
        extra: dict[str, str] = {"pair_id": item.id, "correct": "1" if item.correct else "0"}
        if item.type is not None:
            extra.update(type=item.type, subtype=item.subtype or "")
        utts.append(Utterance(id=item.filename, audio=str(wavs[item.filename]), text=item.text or None,
                              speaker=item.voice, extra=extra))
    return utts


__all__ = ["GOLD_COLUMNS", "LAYOUT", "SPLITS", "TASKS", "GoldItem", "load_zr2021", "read_gold"]
