"""Fluent Speech Commands: ``<root>/data/{train,valid,test}_data.csv`` + ``<root>/wavs/speakers/...``.

Each CSV has the header ``,path,speakerId,transcription,action,object,location`` (the
first column is an unnamed pandas index). ``path`` is relative to ``root``. Transcripts
may contain commas and are quoted, so the file is read with the csv module.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from speechunits.data.corpora.common import describe_missing_split, require_corpus_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

SPLITS = ("train", "valid", "test")
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")
LAYOUT = "<root>/data/{train,valid,test}_data.csv with columns ,path,speakerId,transcription,action,object,location"


def intent_of(action: str, obj: str, location: str) -> str:
    """The FSC intent label: ``action_object_location``."""
    return f"{action}_{obj}_{location}"


def _row_to_utterance(base: Path, csv_path: Path, row: dict[str, str | None], lineno: int) -> Utterance:
    """One CSV row -> Utterance (id ``<speakerId>-<wav stem>``), fields checked."""
    values: dict[str, str] = {}
    for col in COLUMNS:
        value = row.get(col)
        if value is None or not value.strip():
            raise ManifestError(csv_path, f"column {col!r} is empty or missing in this row", lineno)
        values[col] = value.strip()
    if row.get(None):  # type: ignore[call-overload]
        raise ManifestError(csv_path, f"row has more fields than the {len(COLUMNS) + 1} columns of the header", lineno)
    audio = base / values["path"]
    if not audio.is_file():
        raise ManifestError(csv_path, f"transcript row has no audio file {audio}", lineno)
    action, obj, location = values["action"], values["object"], values["location"]
    return Utterance(
        id=f"{values['speakerId']}-{audio.stem}",
        audio=str(audio),
        text=values["transcription"],
        speaker=values["speakerId"],
        extra={"action": action, "object": obj, "location": location, "intent": intent_of(action, obj, location)},
    )


def load_fsc(root: PathLike, split: str) -> list[Utterance]:
    """All utterances of one FSC split, sorted by id.

    ``extra`` holds ``action``, ``object``, ``location`` and ``intent``. Raises
    ManifestError for a missing corpus/split file, a header without the FSC columns, rows
    with missing fields or audio, and duplicate utterances.
    """
    base = require_corpus_dir(root, "Fluent Speech Commands", LAYOUT)
    data_dir = base / "data"
    if not data_dir.is_dir():
        raise ManifestError(data_dir, f"expected the FSC data/ directory; layout {LAYOUT}")
    csv_path = data_dir / f"{split}_data.csv"
    if not csv_path.is_file():
        present = [p.name[: -len("_data.csv")] for p in data_dir.glob("*_data.csv")]
        raise describe_missing_split(csv_path, split, "Fluent Speech Commands", present)
    utts: dict[str, Utterance] = {}
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(
                csv_path, f"header lacks column(s) {', '.join(missing)}; found {reader.fieldnames}", 1
            )
        try:
            for row in reader:
                utt = _row_to_utterance(base, csv_path, row, reader.line_num)
                if utt.id in utts:
                    problem = f"duplicate utterance {utt.id!r} ({utts[utt.id].audio})"
                    raise ManifestError(csv_path, problem, reader.line_num)
                utts[utt.id] = utt
        except csv.Error as err:
            raise ManifestError(csv_path, f"malformed CSV ({err})", reader.line_num) from err
    if not utts:
        raise ManifestError(csv_path, "split CSV holds no rows")
    return sorted(utts.values(), key=lambda u: u.id)
