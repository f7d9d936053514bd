"""Audio -> unit records in memory, with the tokenizers the vocoders are trained on.

``resynthesize`` needs the units of a few audio files without writing a unit set. Two kinds:

* **syllables** (:class:`SyllableTokenizer`): a Sylber model's greedy segmentation
  (:class:`speechunits.sylber.segmenter.Segmenter`, thresholds from the checkpoint) and, for
  a vocoder over cluster ids, the k-means codebook the training units were quantized with;
* **frame units** (:class:`FrameUnitTokenizer`): one encoder layer at its frame rate, each
  frame's nearest centroid, consecutive repeats merged into one token (as ``frame-units``).

Both hand back :class:`UnitRecord` s (plus segment embeddings for syllables) and the
:class:`UnitSetMeta` they would have in a unit set, so the vocoder reads them exactly as it
reads files. As in a unit set, a record holds the audio file's own ``num_samples`` and
``sample_rate`` (from its header), while its frames count at the model's rate (the meta's):
a 22.05 kHz file is encoded at 16 kHz, and the vocoder's frame grid,
``meta.audio_frames(num_samples, sample_rate)``, is that of the resampled audio.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechunits.audio import audio_info, load_audio
from speechunits.errors import ConfigError
from speechunits.units.convert import frames_to_runs
from speechunits.units.meta import UnitSetMeta, default_special_ids
from speechunits.units.record import UnitRecord

PathLike = str | os.PathLike[str]


@dataclass
class Tokenized:
    """One audio file's units (and per-token embeddings for syllables)."""

    record: UnitRecord
    embeddings: np.ndarray | None = None


def _meta(kind: str, sample_rate: int, hop: int, vocab_size: int | None, silence: int | None) -> UnitSetMeta:
    return UnitSetMeta(kind=kind, sample_rate=sample_rate, hop=hop, vocab_size=vocab_size,
                       special_ids={**default_special_ids(), "silence": silence})


def _record(path: PathLike, starts: list[int], ends: list[int], units: list[int] | None) -> UnitRecord:
    """The unit record of one audio file: its id is the file's stem, its length and rate the file's own."""
    info = audio_info(path)
    return UnitRecord(id=Path(path).stem, audio=str(Path(path).absolute()), num_samples=info.num_samples,
                      sample_rate=info.sample_rate, starts=starts, ends=ends, units=units)


def _hop(sample_rate: int, frame_rate: float) -> int:
    hop = sample_rate / frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ConfigError(None, f"frame rate {frame_rate} Hz is not an integer hop at {sample_rate} Hz")
    return int(round(hop))


class SyllableTokenizer:
    """Sylber segmentation (+ k-means ids when ``codebook`` is given) of audio files."""

    def __init__(self, model: PathLike, codebook: PathLike | None = None, *, device: str = "cpu") -> None:
        from speechunits.quantize.codebook import Assigner, load_codebook
        from speechunits.sylber.segmenter import Segmenter

        self.segmenter = Segmenter(model, device=device)
        self.book = None if codebook is None else load_codebook(codebook)
        self.assign = None if self.book is None else Assigner(self.book, device=device)
        sample_rate = self.segmenter.sample_rate
        vocab = None if self.book is None else self.book.k + 1
        self.meta = _meta("syllable", sample_rate, _hop(sample_rate, self.segmenter.frame_rate), vocab,
                          None if self.book is None else self.book.k)

    def __call__(self, paths: Sequence[PathLike]) -> list[Tokenized]:
        results = self.segmenter.segment_many([str(p) for p in paths])
        out = []
        for path, res in zip(paths, results):
            units = None if self.assign is None else self.assign(res.embeddings).tolist()
            rec = _record(path, res.segments_frames[:, 0].tolist(), res.segments_frames[:, 1].tolist(), units)
            out.append(Tokenized(rec, res.embeddings.astype(np.float32)))
        return out


class FrameUnitTokenizer:
    """k-means frame units of one encoder layer (``layer``, 1-based) of audio files."""

    def __init__(self, model: PathLike, codebook: PathLike, layer: int, *, device: str = "cpu") -> None:
        from speechunits.device import resolve_device
        from speechunits.encoders.batch import BatchEncoder
        from speechunits.encoders.checkpoints import load_encoder
        from speechunits.quantize.codebook import Assigner, load_codebook

        dev = resolve_device(device)
        encoder = load_encoder(model, map_location="cpu").to(dev).eval()
        self.encoder = BatchEncoder(encoder, layer=layer, device=dev)
        self.book = load_codebook(codebook)
        self.assign = Assigner(self.book, device=dev)
        self.sample_rate = int(encoder.config.sample_rate)
        self.meta = _meta("frame", self.sample_rate, _hop(self.sample_rate, float(encoder.frame_rate)),
                          self.book.k + 1, self.book.k)

    def __call__(self, paths: Sequence[PathLike]) -> list[Tokenized]:
        waves = [load_audio(p, self.sample_rate) for p in paths]
        features: dict[int, np.ndarray] = {}
        for batch in self.encoder.encode_waveforms(waves, names=[str(p) for p in paths]):
            if batch.failed:
                from speechunits.errors import AudioError

                raise AudioError(None, batch.failed[0].reason)
            for enc in batch.encoded:
                features[int(enc.id)] = np.array(enc.features)
        out = []
        for i, path in enumerate(paths):
            units, starts, ends = frames_to_runs(self.assign(features[i]))
            rec = _record(path, starts, ends, units)
            out.append(Tokenized(rec))
        return out
