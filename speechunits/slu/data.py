"""Corpus utterances -> SLU examples, and padding collate for training batches.

An :class:`SLUExample` carries the audio path, the transcript and the class label the
class-incremental benchmark is built on: the FSC intent ``action_object_location``, or
the SLURP scenario (``level="scenario"``, the COCONUT setting) / full intent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.audio import load_audio
from speechunits.data.corpora.fsc import intent_of
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError
from speechunits.slu.tokenizer import BOS_ID, EOS_ID, PAD_ID, SLUTokenizer

SLURP_LEVELS = ("scenario", "intent")


@dataclass(frozen=True)
class SLUExample:
    """One SLU training/test example."""

    id: str
    audio: str
    transcript: str
    label: str
    speaker: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _require_text(utt: Utterance) -> str:
    if not utt.text:
        raise ManifestError(utt.audio, f"utterance {utt.id!r} has no transcript")
    return utt.text


def fsc_examples(utts: Sequence[Utterance]) -> list[SLUExample]:
    """FSC utterances (``load_fsc``) -> examples labelled ``action_object_location``."""
    out = []
    for u in utts:
        try:
            label = u.extra.get("intent") or intent_of(u.extra["action"], u.extra["object"], u.extra["location"])
        except KeyError as err:
            raise ManifestError(u.audio, f"FSC utterance {u.id!r} lacks the label field {err}") from None
        out.append(SLUExample(u.id, u.audio, _require_text(u), str(label), u.speaker, dict(u.extra)))
    return out


def slurp_examples(utts: Sequence[Utterance], level: str = "scenario") -> list[SLUExample]:
    """SLURP utterances (``load_slurp``) -> examples labelled by scenario (or full intent)."""
    if level not in SLURP_LEVELS:
        raise ValueError(f"SLURP label level must be one of {SLURP_LEVELS}, got {level!r}")
    out = []
    for u in utts:
        if level not in u.extra:
            raise ManifestError(u.audio, f"SLURP utterance {u.id!r} lacks the {level!r} label")
        out.append(SLUExample(u.id, u.audio, _require_text(u), str(u.extra[level]), u.speaker, dict(u.extra)))
    return out


def examples_from_utterances(utts: Sequence[Utterance], corpus: str, level: str = "scenario") -> list[SLUExample]:
    """Dispatch on ``corpus`` (``fsc`` or ``slurp``)."""
    if corpus == "fsc":
        return fsc_examples(utts)
    if corpus == "slurp":
        return slurp_examples(utts, level)
    raise ValueError(f"unknown SLU corpus {corpus!r}; expected 'fsc' or 'slurp'")


@dataclass
class SLUBatch:
    """A padded batch. ``tokens_in`` = bos + target, ``tokens_out`` = target + eos, pad 0."""

    ids: list[str]
    audio: Tensor  # (B, S) float32, zero padded (or (B, T) long unit ids)
    audio_lens: Tensor  # (B,)
    tokens_in: Tensor  # (B, L)
    tokens_out: Tensor  # (B, L)
    labels: Tensor  # (B,) class index (-1 when unknown)
    label_names: list[str]

    def to(self, device: torch.device | str) -> SLUBatch:
        return SLUBatch(
            self.ids,
            self.audio.to(device),
            self.audio_lens.to(device),
            self.tokens_in.to(device),
            self.tokens_out.to(device),
            self.labels.to(device),
            self.label_names,
        )


def decoder_io(targets: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Target id lists -> padded (``[bos] + t``, ``t + [eos]``) tensors."""
    length = max(len(t) for t in targets) + 1
    tin = torch.full((len(targets), length), pad_id, dtype=torch.long)
    tout = torch.full((len(targets), length), pad_id, dtype=torch.long)
    for i, t in enumerate(targets):
        t = list(t)
        tin[i, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        tout[i, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return tin, tout


def pad_audio(waves: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
    """1-D waveforms -> zero-padded (B, S) float32 tensor and (B,) lengths."""
    lens = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros((len(waves), int(lens.max())), dtype=torch.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.as_tensor(np.asarray(w), dtype=torch.float32)
    return out, lens


def collate(
    examples: Sequence[SLUExample],
    tokenizer: SLUTokenizer,
    class_index: Mapping[str, int] | None = None,
    waves: Sequence[np.ndarray] | None = None,
    sample_rate: int = 16000,
) -> SLUBatch:
    """Examples -> :class:`SLUBatch`. Audio is read with ``load_audio`` unless ``waves`` is given."""
    if not examples:
        raise ValueError("collate needs at least one example")
    if waves is None:
        waves = [load_audio(ex.audio, target_sr=sample_rate) for ex in examples]
    audio, audio_lens = pad_audio(waves)
    tin, tout = decoder_io([tokenizer.encode_target(ex.label, ex.transcript) for ex in examples])
    index = class_index or {}
    labels = torch.tensor([index.get(ex.label, -1) for ex in examples], dtype=torch.long)
    return SLUBatch([ex.id for ex in examples], audio, audio_lens, tin, tout, labels, [ex.label for ex in examples])
