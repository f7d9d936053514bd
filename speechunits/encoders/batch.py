"""The one batched inference path: many utterances -> per-utterance encoder features, no utterance lost.

Corpus tokenization, frame units and Sylber's :class:`~speechunits.sylber.segmenter.Segmenter`
run an encoder over many utterances. They all use :class:`BatchEncoder`, so batching,
padding, trimming and the accounting of utterances that cannot be encoded happen one way:

* **Batching.** Utterances are sorted by length and packed into buckets whose *padded* size
  (batch size x longest item) stays within the budget
  (:func:`speechunits.data.pipeline.pack_buckets`): the least padding for the budget. The
  budget is ``batch_seconds`` of padded audio, or, when ``max_batch_frames`` is given, the
  smaller of that and ``max_batch_frames`` padded encoder frames (B x T_frames): the frame
  budget is what bounds the device memory of a forward pass (activations scale with it), so
  it is the one to set on a GPU; ``batch_seconds`` stays as an upper bound.
  Manifest utterances are planned from header lengths and decoded in parallel by
  :func:`speechunits.data.pipeline.build_audio_pipeline`; in-memory waveforms are packed the
  same way.
* **Trimming.** A batch runs once through the encoder under ``torch.inference_mode()`` (bf16
  autocast on CUDA when ``autocast``; ``torch.compile`` of the forward when ``compile``,
  falling back to eager with a warning when compiling fails); row ``i`` is cut to its exact
  frame count. Lengths are checked on the host, so the forward reads nothing back from the
  device (no sync, no graph break). The encoder
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
the next batch runs through the encoder. With ``keep_on_device=True`` the features are not
copied to the host at all: each :class:`EncodedBatch` carries a :class:`DeviceBatch` (padded
device features, frame lengths and a per-row finiteness flag from a device reduction), and
the caller reduces them on the device (Sylber's segmentation,
:mod:`speechunits.sylber.segment_batch`) before anything leaves it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from speechunits.data.pipeline import SkippedUtterance, build_audio_pipeline, pack_buckets, pad_waveforms
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
class DeviceBatch:
    """One forward pass whose features stay on the device (``BatchEncoder(keep_on_device=True)``).

    Rows with no frames are already reported as failures (TOO_SHORT) and listed in ``skip``;
    rows whose ``finite`` flag is False are the caller's to report (:meth:`non_finite`).
    """

    ids: list[str]
    names: list[str]
    num_samples: list[int]  # at the model's sample rate
    num_frames: list[int]  # exact frames per row, computed on the host
    features: torch.Tensor  # (B, T, D) on the device, in the forward's dtype (bf16 under autocast); padding zero
    frame_lengths: torch.Tensor  # (B,) int64 on the device (equal to num_frames)
    finite: torch.Tensor  # (B,) bool on the device: every valid frame finite
    what: str = "the model"
    skip: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.ids) - len(self.skip)

    def non_finite(self, row: int) -> EncodeFailure:
        """The failure of a row whose features are not finite (the same reason as the host path's)."""
        return EncodeFailure(self.ids[row], NON_FINITE, f"{self.names[row]}: non-finite features from {self.what}")


@dataclass
class EncodedBatch:
    """What one step yields: the utterances of one forward pass and the failures found since the last step.

    With ``keep_on_device`` the utterances are in ``device`` (``encoded`` stays empty).
    """

    encoded: list[Encoded] = field(default_factory=list)
    failed: list[EncodeFailure] = field(default_factory=list)
    device: DeviceBatch | None = None

    def __len__(self) -> int:
        return len(self.encoded) + len(self.failed) + (len(self.device) if self.device is not None else 0)


def finite_rows(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """(B,) bool on the device: row ``b``'s first ``frame_lengths[b]`` frames are all finite.

    Per-frame max and min (NaN propagates; +-inf shows in one of them), so no (B, T, D) copy is made.
    """
    frame_ok = torch.isfinite(features.amax(dim=-1)) & torch.isfinite(features.amin(dim=-1))  # (B, T)
    padding = torch.arange(features.shape[1], device=features.device)[None, :] >= frame_lengths[:, None]
    return (frame_ok | padding).all(dim=1)


class PaddedForward:
    """The model's forward over one padded batch, eager or ``torch.compile``'d, with a fallback.

    ``compile``: False (eager), True (the default inductor backend) or a ``torch.compile``
    backend (a name or a compiler function). Compiling happens at the first call; if it (or a later recompile) raises,
    a warning names the error and this object runs eager from then on. A
    :class:`~speechunits.encoders.model.SpeechEncoder` is called with ``check_lengths=False``
    (the caller checked the lengths on the host).
    """

    def __init__(self, model: torch.nn.Module, layer: int | None = None, compile: bool | str | Callable[..., Any] = False
                 ) -> None:
        self.model = model
        self.layer = layer
        self.kwargs: dict[str, Any] = {"check_lengths": False} if isinstance(model, SpeechEncoder) else {}
        self.compiled: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
        if compile:
            backend = "inductor" if compile is True else compile
            # dynamic: buckets come in many (B, S) shapes; one graph with symbolic sizes, not a recompile each
            self.compiled = torch.compile(self.eager, backend=backend, dynamic=True)

    def eager(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward without compilation: the last layer, or layer ``layer``."""
        if self.layer is None:
            return self.model(x, lengths, **self.kwargs)
        layers, frame_lengths = self.model.extract_features(x, lengths, num_layers=self.layer, **self.kwargs)
        return layers[self.layer - 1], frame_lengths

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.compiled is not None:
            try:
                return self.compiled(x, lengths)
            except Exception as err:  # noqa: BLE001 - any compiler failure: run eager, say why once
                why = " ".join(str(err).split())[:500]
                message = f"torch.compile of the encoder failed ({type(err).__name__}: {why}); running eager"
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning("%s", message)
                self.compiled = None
        return self.eager(x, lengths)


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
    feats, frame_lengths = forward_padded(PaddedForward(model, layer), waveforms, lengths, device,
                                          receptive_field=model.receptive_field, autocast=autocast)
    return feats.float().cpu().numpy(), [int(n) for n in frame_lengths.cpu().tolist()]


def check_lengths(waveforms: torch.Tensor, lengths: torch.Tensor) -> None:
    """ValueError unless ``lengths`` (host tensor) is ``(B,)`` with ``1 <= length <= S`` (checked on the host)."""
    batch, total = waveforms.shape
    if lengths.device.type != "cpu":
        raise ValueError(f"lengths must be a host tensor here, found it on {lengths.device}")
    if lengths.shape != (batch,) or bool((lengths > total).any()) or bool((lengths < 1).any()):
        raise ValueError(f"lengths must be (B,) with 1 <= length <= {total}, got {lengths.tolist()}")


def forward_padded(forward: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   waveforms: torch.Tensor, lengths: torch.Tensor, device: torch.device, *, receptive_field: int,
                   autocast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded host batch through ``forward`` on ``device``: ``(B, T, D)`` device features and
    ``(B,)`` device frame lengths. Nothing is read back (the lengths are checked here, on the host).

    A batch shorter than the receptive field is zero-padded so the conv stack runs.
    """
    check_lengths(waveforms, lengths)
    if waveforms.shape[1] < receptive_field:  # a batch of very short utterances
        waveforms = torch.nn.functional.pad(waveforms, (0, receptive_field - waveforms.shape[1]))
    x = waveforms.to(device, non_blocking=True)
    lens = lengths.to(device, non_blocking=True)
    with inference_context(device, autocast=autocast):
        return forward(x, lens)


def batch_budget_samples(sample_rate: int, hop: int, batch_seconds: float, max_batch_frames: int | None) -> int:
    """Padded samples per batch: ``batch_seconds`` of audio, capped by ``max_batch_frames`` x ``hop``
    when a frame budget is given (the smaller wins; ``B x T_frames <= B x S / hop`` since the
    receptive field is at least one hop). ``batch_seconds=inf`` leaves the frame budget alone."""
    if not batch_seconds > 0:
        raise ValueError(f"batch_seconds must be > 0, got {batch_seconds}")
    if max_batch_frames is None:
        if math.isinf(batch_seconds):
            raise ValueError("batch_seconds may be infinite only with a max_batch_frames budget")
        return max(1, int(batch_seconds * sample_rate))
    if int(max_batch_frames) < 1:
        raise ValueError(f"max_batch_frames must be >= 1, got {max_batch_frames}")
    frames_budget = int(max_batch_frames) * int(hop)
    return frames_budget if math.isinf(batch_seconds) else min(max(1, int(batch_seconds * sample_rate)), frames_budget)


class BatchEncoder:
    """Encode many utterances in length-sorted padded batches (see the module docstring).

    Args:
        model: the encoder (its device is used unless ``device`` is given).
        batch_seconds: padded audio per batch (batch size x longest utterance).
        max_batch_frames: padded encoder frames per batch (B x T_frames); when given, the
            smaller of the two budgets wins. This is the device-memory budget.
        layer: 1-based transformer layer whose output is returned (default: the last).
        autocast: bf16 autocast on CUDA (ignored on the CPU).
        compile: ``torch.compile`` the forward (True, or a backend name); eager fallback.
        keep_on_device: yield :class:`DeviceBatch` es instead of host features.
        forward: a :class:`PaddedForward` to reuse (one compiled graph across encoders; ``compile`` is then unused).
        pin_memory, max_padding: data-pipeline options (pinned host batches; a bound on each
            bucket's padding ratio), passed at one place, :meth:`pipeline_options`.
    """

    def __init__(self, model: SpeechEncoder, *, batch_seconds: float = 60.0, max_batch_frames: int | None = None,
                 layer: int | None = None, device: torch.device | None = None, autocast: bool = True,
                 compile: bool | str = False, keep_on_device: bool = False, pin_memory: bool = False,
                 max_padding: float | None = None, forward: PaddedForward | None = None) -> None:
        self.model = model
        self.sample_rate = int(model.config.sample_rate)
        self.hop = int(model.config.hop_length)
        self.budget_samples = batch_budget_samples(self.sample_rate, self.hop, batch_seconds, max_batch_frames)
        self.batch_seconds = self.budget_samples / self.sample_rate
        self.max_batch_frames = max_batch_frames
        self.layer = layer
        self.device = device if device is not None else next(model.parameters()).device
        self.autocast = autocast
        self.keep_on_device = keep_on_device
        self.pin_memory = pin_memory
        self.max_padding = max_padding
        self.min_samples = model.receptive_field
        self.what = "the model" if layer is None else f"layer {layer}"
        self.forward = forward if forward is not None else PaddedForward(model, layer, compile)
        if forward is not None and (forward.model is not model or forward.layer != layer):
            raise ValueError("forward: a PaddedForward of another model or layer")

    def pipeline_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``build_audio_pipeline``: the one call site of the pipeline's
        throughput options (pinned host batches only when the encoder runs on CUDA)."""
        return {"pin_memory": bool(self.pin_memory) and self.device.type == "cuda", "max_padding": self.max_padding}

    def host_frames(self, lengths: torch.Tensor, frame_lengths: torch.Tensor) -> list[int]:
        """Each row's frame count, computed on the host from the sample lengths when the model can
        (no device read); else read back from the forward's ``frame_lengths``."""
        count = getattr(self.model, "frame_lengths", None)
        if count is not None:
            return [int(n) for n in count(lengths).tolist()]
        return [int(n) for n in frame_lengths.cpu().tolist()]

    def _too_short(self, uid: str, name: str, num_samples: int) -> EncodeFailure:
        return EncodeFailure(uid, TOO_SHORT, f"{name}: {num_samples} samples are shorter than the model's "
                                             f"receptive field ({self.min_samples} samples): no frames")

    # ---------------------------------------------------------------- one batch
    def encode_batch(self, ids: Sequence[str], names: Sequence[str], waveforms: torch.Tensor,
                     lengths: torch.Tensor) -> EncodedBatch:
        """Run one padded batch; rows with no frames or non-finite features become failures
        (with ``keep_on_device``, non-finite rows are flagged in the :class:`DeviceBatch`)."""
        feats, frame_lengths = forward_padded(self.forward, waveforms, lengths, self.device,
                                              receptive_field=self.min_samples, autocast=self.autocast)
        frames = self.host_frames(lengths, frame_lengths)
        samples = [int(n) for n in lengths.tolist()]
        out = EncodedBatch()
        if self.keep_on_device:
            skip = [row for row, n in enumerate(frames) if n == 0]
            out.failed = [self._too_short(ids[row], names[row], samples[row]) for row in skip]
            out.device = DeviceBatch(list(ids), list(names), samples, frames, feats, frame_lengths,
                                     finite_rows(feats, frame_lengths), self.what, frozenset(skip))
            return out
        host = feats.float().cpu().numpy()
        for row, (uid, name, num_samples) in enumerate(zip(ids, names, samples)):
            rows = host[row, : frames[row]]
            if frames[row] == 0:
                out.failed.append(self._too_short(uid, name, num_samples))
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
        pin = self.device.type == "cuda"  # pinned host batches: the copy to the device does not wait
        for bucket in pack_buckets([len(waves[i]) for i in usable], self.budget_samples, shuffle=False, seed=0):
            idx = [usable[j] for j in bucket]  # a waveform longer than the budget is a bucket of its own
            x, lengths = pad_waveforms([waves[i] for i in idx])
            yield self.encode_batch([ids[i] for i in idx], [names[i] for i in idx], x.pin_memory() if pin else x,
                                    lengths)

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
                                        num_parallel_calls=num_workers, prefetch=prefetch, on_error="report",
                                        **self.pipeline_options())
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
    "DeviceBatch",
    "EncodeFailure",
    "Encoded",
    "EncodedBatch",
    "PaddedForward",
    "batch_budget_samples",
    "check_lengths",
    "encode_padded",
    "finite_rows",
    "forward_padded",
    "pad_waveforms",
]
