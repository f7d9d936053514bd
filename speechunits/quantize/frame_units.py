"""Frame units: per-frame features (e.g. HuBERT layer features at 50 Hz) -> deduplicated k-means runs.

Each frame of an utterance's ``(T, D)`` features is assigned to its nearest centroid, and
consecutive repeats become one token ``[start, end)`` (:func:`speechunits.units.frames_to_runs`),
so a frame unit set has the same schema as a syllable one (``kind="frame"``) and
:func:`speechunits.units.runs_to_frames` gives the frame sequence back.

Frame ``i`` covers samples ``[i * hop, (i + 1) * hop)`` at the set's rate. Features longer than
the audio (its ``ceil(num_samples * sample_rate_set / (sample_rate * hop))`` frames, plus the
format's 1-frame tolerance) are an error, never silently cut.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechunits.errors import UnitFormatError
from speechunits.quantize.apply import codebook_producer, codebook_vocabulary
from speechunits.quantize.codebook import Assigner, Codebook, load_codebook
from speechunits.units import UnitSetWriter, ValidationReport, frames_to_runs, validate_unit_set
from speechunits.units.record import END_TOLERANCE

PathLike = str | os.PathLike[str]


@dataclass
class FrameItem:
    """One utterance and its per-frame features ``(T, D)``.

    ``num_samples`` and ``sample_rate`` are the audio file's own (per channel, at the file's
    rate: what the unit format records), even when the features were computed from the audio
    resampled to the set's rate; the frames count at the set's ``sample_rate / hop``.
    """

    id: str
    audio: str
    num_samples: int
    sample_rate: int
    features: Any
    speaker: str | None = None
    text: str | None = None


def write_frame_units(
    out_dir: PathLike,
    items: Iterable[FrameItem],
    codebook: PathLike | Codebook,
    *,
    sample_rate: int = 16000,
    hop: int = 320,
    producer: dict[str, Any] | None = None,
    source_manifest: str | None = None,
    audio_root: str | None = None,
    device: str = "cpu",
    chunk_rows: int | None = None,
    total: int | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Quantize each item's frames, deduplicate into runs, write a ``kind="frame"`` unit set and validate it.

    ``sample_rate``/``hop`` define the frame grid (default 16000/320 = 50 Hz). ``producer``
    (e.g. the feature model's checkpoint hash and layer) is recorded with the codebook.
    """
    book = codebook if isinstance(codebook, Codebook) else load_codebook(codebook)
    nearest = Assigner(book, chunk_rows=chunk_rows, device=device)
    out = Path(out_dir)
    with UnitSetWriter(out, kind="frame", sample_rate=sample_rate, hop=hop, producer=frame_units_producer(producer, book),
                       source_manifest=source_manifest, audio_root=audio_root, **codebook_vocabulary(book)) as writer:
        for item in tqdm(items, total=total, desc="frame units", unit="utt", disable=not progress, leave=False):
            add_frame_units(writer, nearest, item)
    return validate_unit_set(out)


def frame_units_producer(producer: dict[str, Any] | None, book: Codebook) -> dict[str, Any]:
    """The ``producer`` of a frame unit set: the feature producer's keys plus the codebook's."""
    return {**(producer or {}), "codebook": codebook_producer(book)}


def add_frame_units(writer: UnitSetWriter, nearest: Assigner, item: FrameItem) -> None:
    """Quantize one item's frames, merge repeats into runs, add the record to ``writer``.

    Features longer than the audio allows (its frames at the set's rate plus the format's
    1-frame tolerance) raise UnitFormatError: never silently cut.
    """
    feats = np.asarray(item.features)
    limit = writer.meta.audio_frames(item.num_samples, item.sample_rate) + END_TOLERANCE
    if feats.ndim != 2 or feats.shape[0] > limit:
        raise UnitFormatError(writer.out, f"utterance {item.id!r}: features of shape {feats.shape} for "
                                          f"{item.num_samples} samples at {item.sample_rate} Hz (at most {limit} "
                                          f"frames of {writer.meta.frame_rate} expected)")
    units, starts, ends = frames_to_runs(nearest(feats))
    writer.add(id=item.id, audio=item.audio, num_samples=item.num_samples, sample_rate=item.sample_rate,
               starts=starts, ends=ends, units=units, speaker=item.speaker, text=item.text)
