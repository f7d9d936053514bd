"""Segmenter: audio in, syllable segments + segment embeddings out (the Sylber inference API).

>>> seg = Segmenter("sylber.ckpt", device="auto")          # doctest: +SKIP
>>> r = seg("utt.wav")                                      # doctest: +SKIP
>>> r.segments_seconds, r.embeddings.shape                  # doctest: +SKIP

``segment_many`` batches utterances by length through the toolkit's one batched inference
path (:class:`speechunits.encoders.batch.BatchEncoder`), which trims each utterance's
padding with the model's exact frame lengths; because the encoder is padding-invariant (see
:mod:`speechunits.encoders.model`) the results equal per-item calls. An utterance shorter
than the model's receptive field gets no frames and no segments.

Each batch is segmented where its features are (:mod:`speechunits.sylber.segment_batch`,
``segment_on``): on a CUDA device with the batched device kernels when they are available
(``"auto"``), else on the host by one parallel numba call over the batch. A batch is collected
one step behind, after the next batch's forward pass has been launched, so on a GPU the host
work overlaps that forward pass. ``segment_many(..., hidden_states=False)`` leaves
the frames on the device: only segments and segment means come back.

The boundary shift (``shift`` seconds, default the checkpoint's, see
:mod:`speechunits.sylber.boundary_shift`) moves ``segments_seconds`` exactly and
``segments_frames`` by whole frames, both clipped to the audio; a segment that collapses is
dropped with its embedding row. ``hidden_states`` are the model's, unshifted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from tqdm import tqdm

from speechunits.audio import load_audio, resample, validate_waveform
from speechunits.device import resolve_device
from speechunits.encoders.batch import TOO_SHORT, BatchEncoder, EncodeFailure, PaddedForward
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import AudioError
from speechunits.sylber.boundary_shift import shift_frames, shift_segment_frames, shift_segment_seconds
from speechunits.sylber.segment import segments_to_seconds
from speechunits.sylber.segment_batch import PendingSegments, SegmentedRow, resolve_segment_on, start_segmentation
from speechunits.sylber.thresholds import pick_shift, pick_thresholds

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


@dataclass
class SegmentationResult:
    """Segmentation of one utterance (frames at ``frame_rate``, half-open ``[start, end)``)."""

    segments_frames: np.ndarray  # (N, 2) int64
    segments_seconds: np.ndarray  # (N, 2) float64
    embeddings: np.ndarray  # (N, D) float32 segment means of hidden_states
    hidden_states: np.ndarray | None  # (T, D) float32 last-layer features (None: not asked for)
    frame_rate: float
    num_samples: int  # at sample_rate
    sample_rate: int = 16000
    shift: float = 0.0  # seconds added to the boundary times (segments_frames: shift_frames frames)
    shift_frames: int = 0

    @property
    def num_segments(self) -> int:
        return int(self.segments_frames.shape[0])


def _mono(wav: np.ndarray, name: str) -> np.ndarray:
    """Mix a (S, C) or (C, S) array to mono; the channel axis is the short one."""
    if wav.ndim == 1:
        return wav
    if wav.ndim != 2:
        raise AudioError(name, f"expected a 1-D or 2-D (multi-channel) waveform, found shape {tuple(wav.shape)}")
    axis = 0 if wav.shape[0] < wav.shape[1] else 1
    return wav.mean(axis=axis)


class Segmenter:
    """Sylber syllable segmenter around a :class:`SpeechEncoder`.

    Args:
        checkpoint: a model, or a checkpoint path for :func:`speechunits.encoders.checkpoints.load_encoder`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        norm_threshold, merge_threshold, reset_count: greedy segmentation settings (attributes,
            settable after construction). ``None`` takes the thresholds recorded in the
            checkpoint (``model.segmentation_defaults``), else Sylber's defaults
            (:mod:`speechunits.sylber.thresholds`).
        shift: seconds added to every boundary (``None``: the checkpoint's ``shift``, else 0);
            a settable attribute like the thresholds.
        autocast: bf16 autocast on CUDA (ignored on the CPU).
        compile: ``torch.compile`` the encoder forward (True or a backend name), eager fallback.
        segment_on: where batches are segmented: ``"auto"``, ``"host"`` or ``"device"``
            (:func:`speechunits.sylber.segment_batch.resolve_segment_on`).
        load_kwargs: passed to ``load_encoder`` (``config``, ``prefix``, ``num_layers`` ...).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | SpeechEncoder,
        *,
        device: str | torch.device = "auto",
        norm_threshold: float | None = None,
        merge_threshold: float | None = None,
        reset_count: bool = False,
        shift: float | None = None,
        autocast: bool = True,
        compile: bool | str = False,
        segment_on: str = "auto",
        **load_kwargs: Any,
    ) -> None:
        self.device = resolve_device(device)
        if isinstance(checkpoint, SpeechEncoder):
            model = checkpoint
        else:
            from speechunits.encoders.checkpoints import load_encoder

            model = load_encoder(checkpoint, map_location="cpu", **load_kwargs)
        self.model = model.to(self.device).eval()
        self.norm_threshold, self.merge_threshold = pick_thresholds(model.segmentation_defaults, norm_threshold,
                                                                    merge_threshold)
        self.shift = pick_shift(model.segmentation_defaults, shift)
        self.reset_count = bool(reset_count)
        self.autocast = bool(autocast)
        self.segment_on = resolve_segment_on(segment_on, self.device)
        self.forward = PaddedForward(self.model, None, compile)  # one (compiled) forward for every call

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)

    def load(self, item: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """A float32 mono waveform at the model's rate from a path, numpy array or tensor."""
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, target_sr=self.sample_rate)
        name = "<array>"
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        wav = np.asarray(item)
        if not np.issubdtype(wav.dtype, np.floating):
            raise AudioError(name, f"expected a floating-point waveform, found dtype {wav.dtype}")
        wav = _mono(wav.astype(np.float32, copy=False), name)
        validate_waveform(wav, name)
        sr = self.sample_rate if sample_rate is None else int(sample_rate)
        return resample(wav, sr, self.sample_rate) if sr != self.sample_rate else np.ascontiguousarray(wav)

    def encode(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Last-layer features (T_i, D) float32 of equal-rate waveforms, run as one padded batch."""
        total = len(waves) * max((len(w) for w in waves), default=0)
        return self._encode(waves, batch_seconds=(total + 1) / self.sample_rate)

    def _encode(self, waves: Sequence[np.ndarray], *, batch_seconds: float, names: Sequence[str] | None = None,
                progress: bool = False, desc: str = "encode") -> list[np.ndarray]:
        """Features of each waveform in input order; too short for a frame: ``(0, D)``."""
        encoder = BatchEncoder(self.model, batch_seconds=batch_seconds, device=self.device, autocast=self.autocast,
                               forward=self.forward)
        states: list[np.ndarray] = [np.zeros((0, self.model.embed_dim), np.float32)] * len(waves)
        with tqdm(total=len(waves), desc=desc, unit="utt", file=sys.stderr, disable=not progress) as bar:
            for batch in encoder.encode_waveforms(waves, names):
                for enc in batch.encoded:
                    states[int(enc.id)] = enc.features
                for failure in batch.failed:
                    if failure.kind != TOO_SHORT:
                        raise AudioError(None, failure.reason)
                bar.update(len(batch))
        return states

    def _result(self, num_samples: int, segments: np.ndarray, embeddings: np.ndarray,
                hidden: np.ndarray | None) -> SegmentationResult:
        """One utterance's result, the boundary shift applied."""
        s = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        emb = np.asarray(embeddings, dtype=np.float32)
        frames = shift_frames(self.shift, self.frame_rate)
        seconds = segments_to_seconds(s, self.frame_rate)
        if self.shift != 0.0:
            hop = int(self.model.config.hop_length)
            seconds = shift_segment_seconds(seconds, self.shift, num_samples / self.sample_rate)
            moved, keep = shift_segment_frames(s, frames, -(-num_samples // hop))
            ok = seconds[keep, 1] > seconds[keep, 0]  # non-empty both in frames and in seconds
            s, seconds, emb = moved[ok], seconds[keep[ok]], emb[keep[ok]]
        return SegmentationResult(segments_frames=s, segments_seconds=seconds, embeddings=emb, hidden_states=hidden,
                                  frame_rate=self.frame_rate, num_samples=num_samples, sample_rate=self.sample_rate,
                                  shift=self.shift, shift_frames=frames)

    def _segment(self, waves: Sequence[np.ndarray], *, batch_seconds: float, max_batch_frames: int | None = None,
                 names: Sequence[str] | None = None, hidden_states: bool = True,
                 progress: bool = False) -> list[SegmentationResult]:
        """Segment waveforms at the model's rate, in input order; each batch is collected one step
        behind (on a GPU its host work overlaps the next, asynchronous, forward pass)."""
        encoder = BatchEncoder(self.model, batch_seconds=batch_seconds, max_batch_frames=max_batch_frames,
                               device=self.device, autocast=self.autocast, keep_on_device=True, forward=self.forward)
        dim = self.model.embed_dim
        no_frames = np.zeros((0, dim), np.float32)
        results: list[SegmentationResult | None] = [None] * len(waves)

        def fail(failures: list[EncodeFailure]) -> None:
            for failure in failures:
                if failure.kind != TOO_SHORT:
                    raise AudioError(None, failure.reason)
                i = int(failure.id)
                results[i] = self._result(len(waves[i]), np.zeros((0, 2), np.int64), no_frames,
                                          no_frames if hidden_states else None)

        def collect(pending: PendingSegments) -> None:
            rows, failed = pending.result()
            fail(failed)
            for row in rows:
                results[int(row.id)] = self._row_result(row)

        pending: PendingSegments | None = None
        with tqdm(total=len(waves), desc="segment", unit="utt", file=sys.stderr, disable=not progress) as bar:
            for batch in encoder.encode_waveforms(waves, names):
                fail(batch.failed)
                started = None
                if batch.device is not None:
                    started = start_segmentation(batch.device, self.segment_on, norm_threshold=self.norm_threshold,
                                                 merge_threshold=self.merge_threshold, reset_count=self.reset_count,
                                                 keep_features=hidden_states, embedding_dtype=torch.float32)
                if pending is not None:
                    collect(pending)
                pending = started
                bar.update(len(batch))
            if pending is not None:
                collect(pending)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _row_result(self, row: SegmentedRow) -> SegmentationResult:
        emb = row.embeddings if row.embeddings is not None else np.zeros((0, self.model.embed_dim), np.float32)
        return self._result(row.num_samples, row.segments, emb, row.features)

    def __call__(self, audio: AudioInput, sample_rate: int | None = None) -> SegmentationResult:
        """Segment one utterance (path, or array/tensor at ``sample_rate``, default the model's)."""
        wav = self.load(audio, sample_rate)
        return self._segment([wav], batch_seconds=(len(wav) + 1) / self.sample_rate)[0]

    def encode_many(
        self,
        items: Iterable[AudioInput],
        sample_rate: int | None = None,
        *,
        batch_seconds: float = 60.0,
        progress: bool = False,
        desc: str = "encode",
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Waveforms and last-layer features of many utterances, in input order, batched by length.

        A batch holds utterances of similar length whose padded size stays within
        ``batch_seconds`` of audio (a longer utterance runs alone). An utterance whose features
        are not finite raises AudioError naming it.
        """
        items = list(items)
        waves = [self.load(item, sample_rate) for item in items]
        names = [str(item) if isinstance(item, (str, os.PathLike)) else f"<array {i}>" for i, item in enumerate(items)]
        return waves, self._encode(waves, batch_seconds=batch_seconds, names=names, progress=progress, desc=desc)

    def segment_many(
        self,
        items: Iterable[AudioInput],
        sample_rate: int | None = None,
        *,
        batch_seconds: float = 60.0,
        max_batch_frames: int | None = None,
        hidden_states: bool = True,
        progress: bool = False,
    ) -> list[SegmentationResult]:
        """Segment many utterances, in input order (batched as :meth:`encode_many` does).

        ``max_batch_frames`` caps the padded encoder frames of a batch (the smaller budget wins);
        ``hidden_states=False`` returns results without frames (``hidden_states`` None), so on
        the device only segments and their means leave it.
        """
        items = list(items)
        waves = [self.load(item, sample_rate) for item in items]
        names = [str(item) if isinstance(item, (str, os.PathLike)) else f"<array {i}>" for i, item in enumerate(items)]
        return self._segment(waves, batch_seconds=batch_seconds, max_batch_frames=max_batch_frames, names=names,
                             hidden_states=hidden_states, progress=progress)
