"""Importers: fairseq/textlesslib unit lines (``id|u1 u2 ...``) -> a unit set of kind ``frame``.

Each id of a line is taken as one frame at the given frame rate; consecutive repeats are
merged into one token (:func:`speechunits.units.convert.frames_to_runs`), so importing an
exported ``--expand`` file restores the unit set. Audio paths, lengths, speakers and texts
come from a manifest (Kaldi dir or JSONL) when given; otherwise ``audio`` is the id and the
length is ``frames * hop`` samples.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechunits.data.utterance import stored_length
from speechunits.errors import UnitFormatError
from speechunits.units.convert import frames_to_runs
from speechunits.units.writer import UnitSetWriter

PathLike = str | os.PathLike[str]


def parse_frame_rate(text: str | float | int, sample_rate: int) -> int:
    """Hop in samples from a frame rate ``"50"``, ``50.0`` or ``"16000/320"`` at ``sample_rate``."""
    s = str(text).strip()
    try:
        if "/" in s:
            num, den = (int(v) for v in s.split("/", 1))
            if num != sample_rate or den <= 0:
                raise UnitFormatError(None, f"frame rate {s!r} must be '{sample_rate}/HOP' at sample rate {sample_rate}")
            return den
        rate = Fraction(s)
    except (ValueError, ZeroDivisionError):
        raise UnitFormatError(None, f"frame rate must be a number or 'SR/HOP', got {text!r}") from None
    hop = Fraction(sample_rate) / rate if rate > 0 else Fraction(0)
    if hop <= 0 or hop.denominator != 1:
        raise UnitFormatError(None, f"sample rate {sample_rate} / frame rate {s} is not a whole number of samples")
    return int(hop)


def read_fairseq_lines(path: PathLike) -> Iterator[tuple[int, str, list[int]]]:
    """``(line, id, per-frame ids)`` of a fairseq/textlesslib unit file; bad lines raise with file:line."""
    path = Path(path)
    if not path.is_file():
        raise UnitFormatError(path, "missing unit file")
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if "|" not in line:
                raise UnitFormatError(path, f"expected 'id|u1 u2 ...', found {line[:60]!r}", lineno)
            utt, _, body = line.partition("|")
            utt = utt.strip()
            if not utt:
                raise UnitFormatError(path, "empty utterance id", lineno)
            try:
                ids = [int(tok) for tok in body.split()]
            except ValueError:
                raise UnitFormatError(path, f"unit ids must be integers, found {body[:60]!r}", lineno) from None
            if any(i < 0 for i in ids):
                raise UnitFormatError(path, "negative unit id", lineno)
            yield lineno, utt, ids


def import_fairseq_units(
    in_path: PathLike,
    out_dir: PathLike,
    *,
    frame_rate: str | float = 50,
    sample_rate: int = 16000,
    manifest: PathLike | None = None,
    vocab_size: int | None = None,
    kind: str = "frame",
    producer: dict[str, Any] | None = None,
) -> int:
    """Import ``id|u1 u2 ...`` lines into a new unit set; returns the number of utterances.

    ``vocab_size`` defaults to (max id + 1), recorded as ``producer.vocab_size_inferred``.
    With a manifest, every id must be in it, and a line may not be longer than the audio
    (``ceil(num_samples / hop) + 1`` frames).
    """
    in_path = Path(in_path)
    hop = parse_frame_rate(frame_rate, sample_rate)
    seen: dict[str, int] = {}
    max_id = -1
    for lineno, utt, ids in read_fairseq_lines(in_path):
        if utt in seen:
            raise UnitFormatError(in_path, f"duplicate id {utt!r} (first on line {seen[utt]})", lineno)
        seen[utt] = lineno
        max_id = max([max_id, *ids])
    utts: dict[str, Any] = {}
    if manifest is not None:
        from speechunits.data.jsonl import load_manifest

        utts = {u.id: u for u in load_manifest(manifest, require_text=False)}
    prod = {"importer": "fairseq", "source": str(in_path), **(producer or {})}
    if vocab_size is None:
        vocab_size = max_id + 1 if max_id >= 0 else None
        prod["vocab_size_inferred"] = True
    with UnitSetWriter(out_dir, kind=kind, sample_rate=sample_rate, hop=hop, producer=prod, vocab_size=vocab_size,
                       source_manifest=None if manifest is None else str(manifest)) as writer:
        lines = tqdm(read_fairseq_lines(in_path), total=len(seen), desc="import-units", unit="utt",
                     file=sys.stderr, disable=not sys.stderr.isatty())
        for lineno, utt_id, ids in lines:
            units, starts, ends = frames_to_runs(ids)
            if manifest is not None:
                if utt_id not in utts:
                    raise UnitFormatError(in_path, f"utterance {utt_id!r} is not in the manifest {manifest}", lineno)
                utt = utts[utt_id]
                num_samples, sr = stored_length(utt)  # the file's own, as the format says
                audio, speaker, text = utt.audio, utt.speaker, utt.text
            else:
                num_samples, sr, audio, speaker, text = len(ids) * hop, sample_rate, utt_id, None, None
            try:
                writer.add(id=utt_id, audio=audio, num_samples=num_samples, sample_rate=sr, starts=starts, ends=ends,
                           units=units, speaker=speaker, text=text)
            except UnitFormatError as err:
                raise UnitFormatError(in_path, err.problem, lineno) from None
    return len(seen)
