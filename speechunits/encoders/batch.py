"""The one batched inference path: many utterances -> per-utterance encoder features, no utterance lost.

Corpus tokenization, frame units and Sylber's :class:`~speechunits.sylber.segmenter.Segmenter`
run an encoder over many utterances. They all use :class:`BatchEncoder`, so batching,
padding, trimming and the accounting of utterances that cannot be encoded happen one way:

* **Batching.** Utterances are sorted by length and packed into buckets whose *padded* size
  (batch size x longest item) stays within ``batch_seconds`` of audio
  (:func:`speechunits.data.pipeline.pack_buckets`): the least padding for the budget.
  Manifest utterances are planned from header lengths and decoded in parallel by
  :func:`speechunits.data.pipeline.build_audio_pipeline`; in-memory waveforms are packed the
  same way.
* **Trimming.** A batch runs once through the encoder under ``torch.inference_mode()`` (bf16
  autocast on CUDA when ``autocast``); row ``i`` is cut to its exact frame count. The encoder
  is padding-invariant (:mod:`speechunits.encoders.model`), so the features equal a
  one-utterance call up to float rounding.
* **Long utterances.** An utterance longer than a whole batch is not dropped: it runs alone,
  after the batches, in input order.
* **Accounting.** Every utterance given comes back exactly once: as an :class:`Encoded`, or
  as an :class:`EncodeFailure` with its reason: bad audio (anything
  :mod:`speechunits.audio` rejects, found while planning, decoding, or decoding a solo run),
  too short for one frame (fewer samples than ``model.receptive_field``), or non-finite
  features. (Before this module each caller classified the pipeline's skipped utterances
  itself; tokenize compared a solo run's decode failure against the *batch* budget, called
  it "long" again and dropped it, so a cut FLAC whose header claims 576460752303423.5 s
  vanished without a line in ``bad_utts.txt``.)

What a caller does per utterance (segmentation, writing, sampling frames) stays with the
caller; a batch is handed over whole, so tokenize can segment it on a worker thread while
the next batch runs through the encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from speechunits.data.pipeline import SkippedUtterance, build_audio_pipeline, pack_buckets
from speechunits.data.utterance import Utterance
from speechunits.device import inference_context
from speechunits.encoders.model import SpeechEncoder

logger = logging.getLogger(__name__)

BAD_AUDIO = "bad-audio"
TOO_SHORT = "too-short"
NON_FINITE = "non-finite"


@dataclass(frozen=True)
class Encoded:
    """One utterance's features: ``(T, D)`` float32, exactly the frames of ``num_samples``.

    ``features`` is a view into its batch's array: copy it to keep it beyond the batch cheaply.
    """

    id: str
    num_samples: int  # at the model's sample rate
    features: np.ndarray


@dataclass(frozen=True)
class EncodeFailure:
    """An utterance that could not be encoded: ``kind`` (BAD_AUDIO, TOO_SHORT, NON_FINITE) and why."""

    id: str
    kind: str
    reason: str

    @property
    def line(self) -> str:
        """Its ``bad_utts.txt`` line: ``id<TAB>reason``."""
        return f"{self.id}\t{self.reason}"


@dataclass
class EncodedBatch:
    """What one step yields: the utterances of one forward pass and the failures found since the last step."""

    encoded: list[Encoded] = field(default_factory=list)
    failed: list[EncodeFailure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.encoded) + len(self.failed)


def encode_padded(
    model: SpeechEncoder,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    device: torch.device,
    *,
    layer: int | None = None,
    autocast: bool = True,
) -> tuple[np.ndarray, list[int]]:
    """One padded batch: ``(B, T, D)`` float32 features on the CPU and each row's frame count.

    ``layer`` (1-based) takes that transformer layer's output instead of the last one. A
    batch shorter than the receptive field is zero-padded so the conv stack runs; rows
    shorter than it get 0 frames.
    """
    need = model.receptive_field
    if waveforms.shape[1] < need:  # a batch of very short utterances
        waveforms = torch.nn.functional.pad(waveforms, (0, need - waveforms.shape[1]))
    x = waveforms.to(device, non_blocking=True)
    lens = lengths.to(device, non_blocking=True)
    with inference_context(device, autocast=autocast):
        if layer is None:
            feats, frame_lengths = model(x, lens)
        else:
            layers, frame_lengths = model.extract_features(x, lens, num_layers=layer)
            feats = layers[layer - 1]
    return feats.float().cpu().numpy(), [int(n) for n in frame_lengths.cpu().tolist()]


def pad_waveforms(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-zero-padded ``(B, max_len)`` float32 batch and its ``(B,)`` lengths."""
    lengths = [len(w) for w in waves]
    batch = np.zeros((len(waves), max(lengths, default=0)), np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return torch.from_numpy(batch), torch.tensor(lengths, dtype=torch.long)


class BatchEncoder:
    """Encode many utterances in length-sorted padded batches (see the module docstring).

    Args:
        model: the encoder (its device is used unless ``device`` is given).
        batch_seconds: padded audio per batch (batch size x longest utterance).
        layer: 1-based transformer layer whose output is returned (default: the last).
        autocast: bf16 autocast on CUDA (ignored on the CPU).
    """

    def __init__(self, model: SpeechEncoder, *, batch_seconds: float = 60.0, layer: int | None = None,
                 device: torch.device | None = None, autocast: bool = True) -> None:
        if not batch_seconds > 0:
            raise ValueError(f"batch_seconds must be > 0, got {batch_seconds}")
        self.model = model
        self.batch_seconds = float(batch_seconds)
        self.layer = layer
        self.device = device if device is not None else next(model.parameters()).device
        self.autocast = autocast
        self.sample_rate = int(model.config.sample_rate)
        self.min_samples = model.receptive_field
        self.what = "the model" if layer is None else f"layer {layer}"

    # ---------------------------------------------------------------- one batch
    def encode_batch(self, ids: Sequence[str], names: Sequence[str], waveforms: torch.Tensor,
                     lengths: torch.Tensor) -> EncodedBatch:
        """Run one padded batch; rows with no frames or non-finite features become failures."""
        feats, frame_lengths = encode_padded(self.model, waveforms, lengths, self.device, layer=self.layer,
                                             autocast=self.autocast)
        out = EncodedBatch()
        for row, (uid, name, num_samples) in enumerate(zip(ids, names, lengths.tolist())):
            frames = frame_lengths[row]
            rows = feats[row, :frames]
            if frames == 0:
                out.failed.append(EncodeFailure(uid, TOO_SHORT, f"{name}: {num_samples} samples are shorter than the "
                                                                f"model's receptive field ({self.min_samples} samples): "
                                                                "no frames"))
            elif not np.isfinite(rows).all():
                out.failed.append(EncodeFailure(uid, NON_FINITE, f"{name}: non-finite features from {self.what}"))
            else:
                out.encoded.append(Encoded(uid, int(num_samples), rows))
        return out

    # ---------------------------------------------------------------- in-memory waveforms
    def encode_waveforms(self, waves: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Iterator[EncodedBatch]:
        """Batches of in-memory mono waveforms at the model's rate.

        Ids are the input positions (``"0"``, ``"1"``, ...); ``names`` (default the ids) name
        the waveforms in failure reasons.
        """
        ids = [str(i) for i in range(len(waves))]
        names = ids if names is None else [str(n) for n in names]
        usable = [i for i, w in enumerate(waves) if len(w) > 0]
        empty = [EncodeFailure(ids[i], BAD_AUDIO, f"{names[i]}: audio is empty (0 samples)")
                 for i, w in enumerate(waves) if len(w) == 0]
        if empty:
            yield EncodedBatch(failed=empty)
        budget = max(1, int(self.batch_seconds * self.sample_rate))
        for bucket in pack_buckets([len(waves[i]) for i in usable], budget, shuffle=False, seed=0):
            idx = [usable[j] for j in bucket]
            x, lengths = pad_waveforms([waves[i] for i in idx])
            yield self.encode_batch([ids[i] for i in idx], [names[i] for i in idx], x, lengths)

    # ---------------------------------------------------------------- manifest utterances
    def encode_utterances(self, utts: Sequence[Utterance], *, num_workers: int = 2,
                          prefetch: int = 2) -> Iterator[EncodedBatch]:
        """Batches of manifest utterances, decoded by the data pipeline; long ones alone at the end."""
        long_utts: list[tuple[Utterance, int]] = yield from self._pass(utts, self.batch_seconds, num_workers,
                                                                       prefetch, solo=False)
        for utt, length in long_utts:
            seconds = length / self.sample_rate
            logger.warning("utterance %s (%.1f s) is longer than a batch (%.1f s); running it alone", utt.id, seconds,
                           self.batch_seconds)
            yield from self._pass([utt], seconds + 1.0, num_workers, prefetch, solo=True)

    def _pass(self, utts: Sequence[Utterance], batch_seconds: float, num_workers: int, prefetch: int, *,
              solo: bool) -> Iterator[EncodedBatch]:
        """One pipeline over ``utts``; returns (StopIteration value) the utterances to run alone.

        In a solo run every skipped utterance is a failure, whatever the pipeline's reason.
        """
        by_id = {u.id: u for u in utts}
        pipeline = build_audio_pipeline(utts, sample_rate=self.sample_rate, max_batch_seconds=batch_seconds,
                                        num_parallel_calls=num_workers, prefetch=prefetch, on_error="report")
        long_utts: list[tuple[Utterance, int]] = []
        seen = 0

        def skipped_since() -> list[EncodeFailure]:
            nonlocal seen
            new: list[SkippedUtterance] = pipeline.skipped[seen:]
            seen = len(pipeline.skipped)
            failed = []
            for s in new:
                if s.too_long is not None and not solo:
                    long_utts.append((by_id[s.id], s.too_long))
                else:
                    failed.append(EncodeFailure(s.id, BAD_AUDIO, s.reason))
            return failed

        try:
            for batch in pipeline:
                names = [by_id[i].audio for i in batch.ids]
                out = self.encode_batch(batch.ids, names, batch.waveforms, batch.lengths)
                out.failed = skipped_since() + out.failed
                yield out
            rest = skipped_since()
            if rest:
                yield EncodedBatch(failed=rest)
        finally:
            # release fairseq2's threads now: left to interpreter exit, fairseq2n 0.8.1 can segfault there
            pipeline.close()
        return long_utts


__all__ = [
    "BAD_AUDIO",
    "NON_FINITE",
    "TOO_SHORT",
    "BatchEncoder",
    "EncodeFailure",
    "Encoded",
    "EncodedBatch",
    "encode_padded",
    "pad_waveforms",
]
