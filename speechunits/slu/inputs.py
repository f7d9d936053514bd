"""Input sources of the SLU model: what the encoder reads for each example.

One interface (:class:`InputSource`) serves training batches (``train_task.make_batch``),
length-sorted inference batches (``evaluate``), herding features and the task loop:

* ``preload(examples)`` reads what the examples need once (and fails early, naming the
  example, when something is missing);
* ``length(example)`` orders examples by length (less padding);
* ``pad(examples) -> (inputs, lengths)`` is what ``SLUModel`` passes to ``encoder(inputs, lengths)``.

Two sources:

* :class:`AudioCache` — 16 kHz mono float32 waveforms (``load_audio``), padded to (B, S).
* :class:`UnitSetSource` — quantized unit sets (``speechunits.units``), one per data set under
  ``units_dir/<set name>/``, looked up by utterance id. Padded to a (B, T, 2) long tensor of
  ``[unit id, duration in frames]`` (ids padded with ``pad_id`` = the codebook size, durations
  with 0), which :class:`~speechunits.slu.encoders.UnitSetEncoder` unpacks. Keeping ids and
  durations in one tensor keeps the encoder call ``encoder(inputs, lengths)`` and row slicing
  (``inputs[is_memory][:, :max_len]`` in NSPT and seq-KD) the same as for audio.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from speechunits.audio import load_audio
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.slu.data import SLUExample, pad_audio
from speechunits.units.meta import META_NAME, read_meta
from speechunits.units.reader import read_units

PathLike = str | os.PathLike[str]


class InputSource(Protocol):
    """What the SLU training and inference code needs from an input source."""

    def preload(self, examples: Sequence[SLUExample], desc: str = ...) -> None: ...

    def length(self, example: SLUExample) -> int: ...

    def pad(self, examples: Sequence[SLUExample]) -> tuple[Tensor, Tensor]: ...

    def encoder_kwargs(self) -> dict[str, Any]: ...


class AudioCache:
    """Waveforms read once (``load_audio``, 16 kHz mono float32) and kept in memory by path."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._waves: dict[str, np.ndarray] = {}

    def preload(self, examples: Sequence[SLUExample], desc: str = "load audio") -> None:
        todo = sorted({ex.audio for ex in examples} - set(self._waves))
        for path in tqdm(todo, desc=desc, unit="utt", file=sys.stderr, disable=not todo or None):
            self._waves[path] = load_audio(path, target_sr=self.sample_rate)

    def __getitem__(self, example: SLUExample) -> np.ndarray:
        wav = self._waves.get(example.audio)
        if wav is None:
            wav = self._waves[example.audio] = load_audio(example.audio, target_sr=self.sample_rate)
        return wav

    def length(self, example: SLUExample) -> int:
        """Samples of the example's waveform."""
        return len(self[example])

    def pad(self, examples: Sequence[SLUExample]) -> tuple[Tensor, Tensor]:
        return pad_audio([self[ex] for ex in examples])

    def encoder_kwargs(self) -> dict[str, Any]:
        return {}


class UnitSetSource:
    """Quantized unit sets ``units_dir/<set>/`` for ``sets`` (the config's ``splits`` values),
    read with the ``speechunits.units`` reader (every line validated) and kept by utterance id.

    The sets must share one codebook (same ``vocab_size`` in ``meta.json``); an id found in two
    sets is an error (ids key the lookup). A missing set, an unquantized record or a missing
    utterance is a UnitFormatError naming the unit directory and the utterance.
    """

    def __init__(self, units_dir: PathLike, sets: Sequence[str]) -> None:
        self.units_dir = Path(units_dir)
        self.sets = list(dict.fromkeys(sets))
        self._ids: dict[str, tuple[list[int], list[int]]] = {}
        self._where: dict[str, str] = {}
        self._vocab: int | None = None
        self._loaded = False

    @property
    def vocab_size(self) -> int:
        """Codebook size of the unit sets (``meta.json`` ``vocab_size``)."""
        self._load()
        assert self._vocab is not None
        return self._vocab

    @property
    def pad_id(self) -> int:
        return self.vocab_size

    def _load(self) -> None:
        if self._loaded:
            return
        for name in self.sets:
            unit_dir = self.units_dir / name
            if not (unit_dir / META_NAME).is_file():
                raise UnitFormatError(unit_dir, f"no unit set for data set {name!r} (expected {META_NAME} and units.jsonl, "
                                                "written by `speechunits tokenize` then `speechunits quantize`)")
            meta = read_meta(unit_dir)
            if not meta.vocab_size:
                raise UnitFormatError(unit_dir / META_NAME, "unit set has no vocab_size: not quantized (run `speechunits quantize`)")
            if self._vocab is not None and meta.vocab_size != self._vocab:
                raise UnitFormatError(unit_dir / META_NAME, f"vocab_size {meta.vocab_size} differs from {self._vocab} of the "
                                                            f"other unit sets under {self.units_dir} (one codebook expected)")
            self._vocab = int(meta.vocab_size)
            for rec in tqdm(read_units(unit_dir), desc=f"read units {name}", unit="utt", file=sys.stderr, disable=None):
                if rec.units is None:
                    raise UnitFormatError(unit_dir / "units.jsonl", f"utterance {rec.id!r} has no quantized 'units' "
                                                                    "(run `speechunits quantize`)")
                if rec.id in self._where:
                    raise UnitFormatError(unit_dir / "units.jsonl", f"utterance {rec.id!r} is also in the unit set "
                                                                    f"{self.units_dir / self._where[rec.id]}")
                durs = [e - s for s, e in zip(rec.starts, rec.ends)]
                self._ids[rec.id] = (list(rec.units), durs)
                self._where[rec.id] = name
        self._loaded = True

    def _get(self, example: SLUExample) -> tuple[list[int], list[int]]:
        self._load()
        found = self._ids.get(example.id)
        if found is None:
            raise UnitFormatError(self.units_dir, f"utterance {example.id!r} ({example.audio}) is in none of the unit sets "
                                                  f"{', '.join(self.sets)} under {self.units_dir}")
        return found

    def preload(self, examples: Sequence[SLUExample], desc: str = "read units") -> None:
        for ex in examples:
            self._get(ex)

    def length(self, example: SLUExample) -> int:
        return len(self._get(example)[0])

    def pad(self, examples: Sequence[SLUExample]) -> tuple[Tensor, Tensor]:
        rows = [self._get(ex) for ex in examples]
        lens = torch.tensor([len(u) for u, _ in rows], dtype=torch.long)
        out = torch.zeros((len(rows), max(1, int(lens.max())), 2), dtype=torch.long)
        out[:, :, 0] = self.pad_id
        for i, (units, durs) in enumerate(rows):
            out[i, : len(units), 0] = torch.as_tensor(units, dtype=torch.long)
            out[i, : len(durs), 1] = torch.as_tensor(durs, dtype=torch.long)
        return out, lens

    def encoder_kwargs(self) -> dict[str, Any]:
        """What the ``units`` encoder takes from the data: the codebook size and pad id."""
        return {"vocab_size": self.vocab_size, "pad_id": self.pad_id}


def make_input_source(encoder: Mapping[str, Any], splits: Mapping[str, str]) -> AudioCache | UnitSetSource:
    """The input source an encoder config (``model.encoder``) reads: unit sets for ``type: units``
    (every data set named in ``splits``), waveforms otherwise."""
    if encoder.get("type") != "units":
        return AudioCache()
    if not encoder.get("units_dir"):
        raise ConfigError(None, "model.encoder.type=units needs model.encoder.units_dir")
    return UnitSetSource(encoder["units_dir"], [v for v in splits.values() if v])


def encoder_arguments(encoder: Mapping[str, Any], inputs: InputSource) -> tuple[str, dict[str, Any]]:
    """``(type, kwargs)`` of an encoder config for the ``ENCODERS`` registry: ``units_dir`` is
    the source's, and the source adds what comes from the data (the codebook size)."""
    kwargs = dict(encoder)
    kind = kwargs.pop("type")
    if kind == "units":
        kwargs.pop("units_dir", None)
        for key in ("vocab_size", "pad_id"):
            if key in kwargs:
                raise ConfigError(None, f"model.encoder.{key} is read from the unit set's meta.json; remove it from the config")
        kwargs.update(inputs.encoder_kwargs())
    return kind, kwargs
