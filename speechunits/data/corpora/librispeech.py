"""LibriSpeech: ``<root>/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``<spk>-<chapter>.trans.txt``.

``root`` is either the extracted ``LibriSpeech/`` directory or the directory holding it.
Each ``trans.txt`` line is ``<utt-id> <TRANSCRIPT>``. Optional MFA-style TextGrid
alignments are looked up per utterance (see :func:`find_alignment`).
"""

from __future__ import annotations

import os
from pathlib import Path

from speechunits.data.corpora.common import describe_missing_split, require_corpus_dir, visible_children
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]

SPLITS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other")
LAYOUT = "<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with <speaker>-<chapter>.trans.txt"


def _split_root(root: Path, split: str) -> Path:
    """The directory holding ``split``: ``root`` itself or ``root/LibriSpeech``."""
    for base in (root, root / "LibriSpeech"):
        if (base / split).is_dir():
            return base
    base = root / "LibriSpeech" if (root / "LibriSpeech").is_dir() else root
    present = [p.name for p in visible_children(base) if p.is_dir()]
    raise describe_missing_split(base / split, split, "LibriSpeech", present)


def read_transcripts(trans: Path, prefix: str) -> dict[str, tuple[str, int]]:
    """``<utt-id> TEXT`` lines of one chapter -> {id: (text, line)}; ids must start with ``prefix-``."""
    out: dict[str, tuple[str, int]] = {}
    with open(trans, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            utt_id, _, text = line.partition(" ")
            if not text.strip():
                raise ManifestError(trans, f"expected '<utt-id> <TRANSCRIPT>', found {line!r}", lineno)
            if not utt_id.startswith(prefix + "-"):
                raise ManifestError(trans, f"utterance id {utt_id!r} does not belong to chapter {prefix!r}", lineno)
            if utt_id in out:
                problem = f"duplicate utterance id {utt_id!r} (first on line {out[utt_id][1]})"
                raise ManifestError(trans, problem, lineno)
            out[utt_id] = (text.strip(), lineno)
    return out


def find_alignment(alignments_dir: Path, split: str, speaker: str, chapter: str, utt_id: str) -> Path | None:
    """The TextGrid of ``utt_id``: split/spk/chapter, spk, or flat layout under ``alignments_dir``."""
    name = f"{utt_id}.TextGrid"
    for candidate in (
        alignments_dir / split / speaker / chapter / name,
        alignments_dir / speaker / name,
        alignments_dir / name,
    ):
        if candidate.is_file():
            return candidate
    return None


def _load_chapter(chapter_dir: Path, speaker: str) -> list[Utterance]:
    """Utterances of one ``<spk>/<chapter>`` directory, audio and transcripts matched both ways."""
    chapter = chapter_dir.name
    prefix = f"{speaker}-{chapter}"
    trans = chapter_dir / f"{prefix}.trans.txt"
    flacs = {p.name[: -len(".flac")]: p for p in chapter_dir.glob("*.flac")}
    if not trans.is_file():
        if not flacs:
            raise ManifestError(chapter_dir, f"expected {prefix}-*.flac files and {trans.name}, found neither")
        first = sorted(flacs)[0]
        raise ManifestError(flacs[first], f"audio file has no transcript: {trans.name} is missing in {chapter_dir}")
    texts = read_transcripts(trans, prefix)
    orphans = sorted(set(flacs) - set(texts))
    if orphans:
        raise ManifestError(flacs[orphans[0]], f"audio file has no transcript line for {orphans[0]!r} in {trans}")
    utts = []
    for utt_id, (text, lineno) in sorted(texts.items()):
        if utt_id not in flacs:
            expected = chapter_dir / f"{utt_id}.flac"
            raise ManifestError(trans, f"transcript of {utt_id!r} has no audio file {expected}", lineno)
        utts.append(
            Utterance(id=utt_id, audio=str(flacs[utt_id]), text=text, speaker=speaker, extra={"chapter": chapter})
        )
    return utts


def load_librispeech(root: PathLike, split: str, alignments_dir: PathLike | None = None) -> list[Utterance]:
    """All utterances of one LibriSpeech split, sorted by id.

    ``speaker`` is the speaker id, ``extra["chapter"]`` the chapter id and, when
    ``alignments_dir`` is given, ``extra["alignment"]`` the TextGrid path where one exists.
    Raises ManifestError for a missing corpus/split directory, audio without transcript,
    transcript lines without audio and malformed lines.
    """
    base = _split_root(require_corpus_dir(root, "LibriSpeech", LAYOUT), split)
    split_dir = base / split
    utts: list[Utterance] = []
    for spk_dir in visible_children(split_dir):
        if not spk_dir.is_dir():
            continue
        for chapter_dir in visible_children(spk_dir):
            if chapter_dir.is_dir():
                utts.extend(_load_chapter(chapter_dir, spk_dir.name))
    if not utts:
        raise ManifestError(split_dir, f"split holds no utterances; expected the layout {LAYOUT}")
    if alignments_dir is not None:
        _attach_alignments(utts, Path(alignments_dir).absolute(), split)
    return sorted(utts, key=lambda u: u.id)


def _attach_alignments(utts: list[Utterance], alignments_dir: Path, split: str) -> None:
    """Store found TextGrid paths in ``extra["alignment"]``; none found at all is an error."""
    if not alignments_dir.is_dir():
        raise ManifestError(alignments_dir, "alignments directory does not exist")
    found = 0
    for utt in utts:
        path = find_alignment(alignments_dir, split, str(utt.speaker), utt.extra["chapter"], utt.id)
        if path is not None:
            utt.extra["alignment"] = str(path)
            found += 1
    if found == 0:
        raise ManifestError(
            alignments_dir,
            f"no TextGrid found for any of the {len(utts)} utterances; expected <split>/<spk>/<chapter>/<id>.TextGrid, "
            "<spk>/<id>.TextGrid or <id>.TextGrid",
        )
