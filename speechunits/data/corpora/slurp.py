"""SLURP: ``<root>/dataset/slurp/{train,devel,test,train_synthetic}.jsonl`` + flac audio.

``root`` is a clone of the SLURP repository. Each JSONL record is one sentence
(``slurp_id``, ``sentence``, ``scenario``, ``action``, ``intent``, ``recordings`` ...);
every entry of its ``recordings`` list (``{"file": "audio-....flac", ...}``) is one
utterance. ``scripts/download_audio.sh`` places the archives under ``<root>/audio/``,
which extract to ``audio/slurp_real/`` and ``audio/slurp_synth/``; those are the default
audio directories (real recordings; synthetic ones for ``train_synthetic``). When
``dataset/slurp/metadata.json`` is present, speakers come from its ``usrid`` fields. The
optional fields ``sentence_annotation`` (``"wake me up at [time : five am]"``) and
``entities`` (``[{"span": [word indices], "type": ...}]``) are kept in ``extra`` when present.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from speechunits.data.corpora.common import describe_missing_split, require_corpus_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

SPLITS = ("train", "devel", "test", "train_synthetic")
LAYOUT = "<root>/dataset/slurp/<split>.jsonl with audio under <root>/audio/slurp_real (or slurp_synth)"
_REQUIRED: dict[str, tuple[type, ...]] = {
    "slurp_id": (int, str),
    "sentence": (str,),
    "scenario": (str,),
    "action": (str,),
    "intent": (str,),
    "recordings": (list,),
}


def default_audio_dir(root: Path, split: str) -> Path:
    """Where ``download_audio.sh`` + extraction put the audio of ``split``."""
    return root / "audio" / ("slurp_synth" if split == "train_synthetic" else "slurp_real")


def read_speakers(metadata: Path) -> dict[str, str]:
    """``metadata.json`` -> {recording file name: usrid}; empty when the file is absent."""
    if not metadata.is_file():
        return {}
    try:
        records = json.loads(metadata.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(metadata, f"expected a JSON object of SLURP records ({err})") from err
    speakers: dict[str, str] = {}
    for record in records.values() if isinstance(records, dict) else ():
        for name, rec in (record.get("recordings") or {}).items():
            if isinstance(rec, dict) and rec.get("usrid"):
                speakers[name] = str(rec["usrid"])
    return speakers


def _is_entity(entity: Any) -> bool:
    return (isinstance(entity, dict) and isinstance(entity.get("type"), str) and isinstance(entity.get("span"), list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in entity["span"]))


def _check_record(path: Path, lineno: int, record: Any) -> None:
    """Malformed-record errors: wrong type, missing or mistyped fields."""
    if not isinstance(record, dict):
        raise ManifestError(path, f"expected a JSON object per line, found {type(record).__name__}", lineno)
    for key, types in _REQUIRED.items():
        if key not in record:
            raise ManifestError(path, f"record lacks the field {key!r}", lineno)
        if not isinstance(record[key], types) or isinstance(record[key], bool):
            raise ManifestError(path, f"field {key!r} has the wrong type ({type(record[key]).__name__})", lineno)
    if not isinstance(record.get("sentence_annotation", ""), str):
        found = type(record["sentence_annotation"]).__name__
        raise ManifestError(path, f"field 'sentence_annotation' has the wrong type ({found}), expected str", lineno)
    entities = record.get("entities", [])
    if not isinstance(entities, list) or not all(_is_entity(e) for e in entities):
        problem = f"expected entities like [{{'span': [word indices], 'type': 'time'}}], found {entities!r}"
        raise ManifestError(path, problem, lineno)
    for rec in record["recordings"]:
        if not isinstance(rec, dict) or not isinstance(rec.get("file"), str) or not rec["file"].strip():
            problem = f"expected recordings entries like {{'file': 'audio-....flac'}}, found {rec!r}"
            raise ManifestError(path, problem, lineno)


def _record_utterances(
    path: Path, lineno: int, record: dict[str, Any], audio_dir: Path, speakers: dict[str, str]
) -> list[Utterance]:
    """One utterance per recording of a checked record."""
    labels: dict[str, Any] = {
        "scenario": record["scenario"],
        "action": record["action"],
        "intent": record["intent"],
        "slurp_id": str(record["slurp_id"]),
    }
    for key in ("sentence_annotation", "entities"):
        if key in record:
            labels[key] = record[key]
    utts = []
    for rec in record["recordings"]:
        name = rec["file"].strip()
        audio = audio_dir / name
        if not audio.is_file():
            problem = f"recording {name!r} of slurp_id {record['slurp_id']} has no audio file {audio}"
            raise ManifestError(path, problem, lineno)
        utts.append(
            Utterance(
                id=Path(name).stem,
                audio=str(audio),
                text=record["sentence"],
                speaker=speakers.get(name),
                extra=copy.deepcopy(labels),
            )
        )
    return utts


def load_slurp(root: PathLike, split: str, audio_dir: PathLike | None = None) -> list[Utterance]:
    """All recordings of one SLURP split, sorted by id (the flac file stem).

    ``extra`` holds ``scenario``, ``action``, ``intent`` and ``slurp_id``, plus
    ``sentence_annotation`` (str) and ``entities`` (list) when the record has them. ``audio_dir``
    defaults to :func:`default_audio_dir`. Raises ManifestError for a missing corpus,
    split file or audio directory, malformed records, recordings without audio and
    duplicate recordings.
    """
    base = require_corpus_dir(root, "SLURP", LAYOUT)
    text_dir = base / "dataset" / "slurp"
    if not text_dir.is_dir():
        raise ManifestError(text_dir, f"expected the SLURP annotations directory; layout {LAYOUT}")
    path = text_dir / f"{split}.jsonl"
    if not path.is_file():
        raise describe_missing_split(path, split, "SLURP", [p.stem for p in text_dir.glob("*.jsonl")])
    audio_root = Path(audio_dir).absolute() if audio_dir is not None else default_audio_dir(base, split)
    if not audio_root.is_dir():
        raise ManifestError(
            audio_root,
            "SLURP audio directory does not exist (run scripts/download_audio.sh and extract the archives "
            "under audio/, or pass the audio directory)",
        )
    speakers = read_speakers(text_dir / "metadata.json")
    utts: dict[str, Utterance] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ManifestError(path, f"invalid JSON ({err.msg} at column {err.colno})", lineno) from None
            _check_record(path, lineno, record)
            for utt in _record_utterances(path, lineno, record, audio_root, speakers):
                if utt.id in utts:
                    problem = f"recording {utt.id!r} appears twice (also in slurp_id {utts[utt.id].extra['slurp_id']})"
                    raise ManifestError(path, problem, lineno)
                utts[utt.id] = utt
    if not utts:
        raise ManifestError(path, "split lists no recordings")
    return sorted(utts.values(), key=lambda u: u.id)
