"""Segment a whole encoder batch where its features are: on the device, or on the host in one parallel call.

:class:`~speechunits.encoders.batch.BatchEncoder` with ``keep_on_device=True`` yields padded
device features (:class:`~speechunits.encoders.batch.DeviceBatch`). :func:`start_segmentation`
turns one such batch into segments and segment means in one of two places:

* ``"device"`` — the batched device kernels of :mod:`speechunits.sylber.segment_device`
  (``greedy_segment_device`` + ``segment_means_device``, imported lazily). Only the segments
  (int32), their count per row, the per-row finiteness flags and the segment means (float16 by
  default) are copied back, asynchronously into pinned host memory; the frames never leave the
  device (unless ``keep_features`` asks for them).
* ``"host"`` — the features are copied to the host once (float32) and segmented by numba's
  :func:`~speechunits.sylber.segment.greedy_segment_batch` over the whole padded batch (all
  cores, ``prange`` over utterances), then averaged per segment. This is the CPU path and the
  fallback where no device kernel runs; the results are those of
  :func:`~speechunits.sylber.segment.greedy_segment` per utterance.

``"auto"`` (:func:`resolve_segment_on`) is ``"device"`` when the encoder runs on CUDA and the
device kernels are available there, else ``"host"``.

:func:`start_segmentation` only *launches* the work (device kernels and copies are queued,
nothing waits) and returns a :class:`PendingSegments`; its :meth:`~PendingSegments.result`
waits for the copies (or runs the host kernel) and hands back one :class:`SegmentedRow` per
utterance plus the rows whose features were not finite (reported like the host path reports
them, from a per-row device reduction rather than a copy of every frame). A caller collects
batch ``k`` while batch ``k + 1`` runs through the encoder: on a worker thread
(``speechunits tokenize``) or one step behind in the same thread
(:meth:`speechunits.sylber.segmenter.Segmenter.segment_many`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np
import torch

from speechunits.encoders.batch import DeviceBatch, EncodeFailure
from speechunits.sylber.segment import greedy_segment_batch, segment_means

SEGMENT_ON = ("auto", "host", "device")
DEVICE_MODULE = "speechunits.sylber.segment_device"


@dataclass(frozen=True)
class SegmentedRow:
    """One utterance's segments (``(N, 2)`` int64 ``[start, end)`` frames) and segment means."""

    id: str
    name: str
    num_samples: int  # at the model's sample rate
    num_frames: int
    segments: np.ndarray
    embeddings: np.ndarray | None  # (N, D): float32 from the host path, ``embedding_dtype`` from the device
    features: np.ndarray | None = None  # (T, D) float32 frames, only with ``keep_features``


def _device_module() -> ModuleType | None:
    """The device kernels' module, or None where it cannot be imported (no Triton, not installed)."""
    try:
        return importlib.import_module(DEVICE_MODULE)
    except ImportError:
        return None


def device_segmentation_ready(device: torch.device) -> bool:
    """Whether :func:`start_segmentation` can segment on ``device`` (the kernels import and say they run there)."""
    module = _device_module()
    return module is not None and bool(module.device_segmentation_available(torch.device(device)))


def resolve_segment_on(segment_on: str, device: torch.device) -> str:
    """``"host"`` or ``"device"`` for ``segment_on`` in :data:`SEGMENT_ON`.

    ``"auto"`` is ``"device"`` only for a CUDA encoder whose device kernels are available;
    ``"device"`` where they are not is a ValueError saying why.
    """
    if segment_on not in SEGMENT_ON:
        raise ValueError(f"segment_on must be one of {', '.join(SEGMENT_ON)}, got {segment_on!r}")
    device = torch.device(device)
    if segment_on == "host":
        return "host"
    if segment_on == "auto":
        return "device" if device.type == "cuda" and device_segmentation_ready(device) else "host"
    if not device_segmentation_ready(device):
        why = "cannot be imported" if _device_module() is None else f"says it cannot run on {device}"
        raise ValueError(f"segmentation on the device was asked for, but {DEVICE_MODULE} {why} (needs CUDA with "
                         "Triton, or TRITON_INTERPRET=1); use segment_on='host' or 'auto'")
    return "device"


_NOTHING = torch.empty(0)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of ``tensor``: queued (pinned memory, ``non_blocking``) for a CUDA tensor, the tensor itself on the CPU."""
    if tensor.device.type == "cpu":
        return tensor
    out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    out.copy_(tensor, non_blocking=True)
    return out


class PendingSegments:
    """One batch's segmentation, launched; :meth:`result` waits for it (call it once, on any thread)."""

    def __init__(self, batch: DeviceBatch, where: str, *, norm_threshold: float, merge_threshold: float,
                 reset_count: bool, embeddings: bool, keep_features: bool, embedding_dtype: torch.dtype) -> None:
        self.batch = batch
        self.where = where
        self.thresholds = (float(norm_threshold), float(merge_threshold), bool(reset_count))
        self.embeddings = embeddings
        feats = batch.features
        self.event: torch.cuda.Event | None = None
        self.finite = _to_host(batch.finite)
        need_frames = keep_features or where == "host"
        self.frames = _to_host(feats if feats.dtype == torch.float32 else feats.float()) if need_frames else None
        self.segments: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.means: torch.Tensor | None = None
        if where == "device":
            module = _device_module()
            if module is None:
                raise ValueError(f"segmentation on the device: {DEVICE_MODULE} cannot be imported")
            lengths = torch.where(batch.finite, batch.frame_lengths, torch.zeros_like(batch.frame_lengths))
            segments, counts = module.greedy_segment_device(feats, lengths, float(norm_threshold),
                                                            float(merge_threshold), reset_count=bool(reset_count))
            self.segments, self.counts = _to_host(segments), _to_host(counts)
            if embeddings:
                self.means = _to_host(module.segment_means_device(feats, segments, counts, dtype=embedding_dtype))
        elif where != "host":
            raise ValueError(f"where must be 'host' or 'device', got {where!r}")
        if feats.device.type == "cuda":
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(feats.device))
        # keep no device memory alive while queued: the copies above are ordered on the stream before any reuse
        self.batch = replace(batch, features=_NOTHING, frame_lengths=_NOTHING, finite=_NOTHING)

    def result(self) -> tuple[list[SegmentedRow], list[EncodeFailure]]:
        """The utterances segmented (batch order, rows without frames left out) and the non-finite ones."""
        if self.event is not None:
            self.event.synchronize()
        b = self.batch
        finite = self.finite.numpy()
        frames = self.frames.numpy() if self.frames is not None else None
        rows = [r for r in range(len(b.ids)) if r not in b.skip]
        failed = [b.non_finite(r) for r in rows if not finite[r]]
        good = [r for r in rows if finite[r]]
        if self.where == "host":
            assert frames is not None
            lengths = np.array([b.num_frames[r] if r in good else 0 for r in range(len(b.ids))], np.int64)
            nt, mt, reset = self.thresholds
            segs = greedy_segment_batch(frames, lengths, nt, mt, reset_count=reset)
            seg_of = {r: segs[r] for r in good}
            emb_of = {r: self._host_means(frames[r, : b.num_frames[r]], seg_of[r]) for r in good}
        else:
            assert self.segments is not None and self.counts is not None
            counts = self.counts.numpy().astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)])
            segments = self.segments.numpy()
            means = self.means.numpy() if self.means is not None else None
            seg_of = {r: segments[r, : counts[r]].astype(np.int64) for r in good}
            emb_of = {r: means[starts[r]: starts[r + 1]] if means is not None else None for r in good}
        out = [SegmentedRow(b.ids[r], b.names[r], b.num_samples[r], b.num_frames[r], seg_of[r], emb_of[r],
                            frames[r, : b.num_frames[r]] if frames is not None else None) for r in good]
        return out, failed

    def _host_means(self, states: np.ndarray, segments: np.ndarray) -> np.ndarray | None:
        return segment_means(states, segments) if self.embeddings else None  # (0, D) for no segments


def start_segmentation(batch: DeviceBatch, where: str, *, norm_threshold: float, merge_threshold: float,
                       reset_count: bool = False, embeddings: bool = True, keep_features: bool = False,
                       embedding_dtype: torch.dtype = torch.float16) -> PendingSegments:
    """Launch the segmentation of one device batch ``where`` (``"host"`` or ``"device"``, see
    :func:`resolve_segment_on`); nothing waits until :meth:`PendingSegments.result`.

    ``embeddings``: also the segment means (float32 on the host path, ``embedding_dtype`` on the
    device path). ``keep_features``: also copy every row's frames to the host (float32).
    """
    return PendingSegments(batch, where, norm_threshold=norm_threshold, merge_threshold=merge_threshold,
                           reset_count=reset_count, embeddings=embeddings, keep_features=keep_features,
                           embedding_dtype=embedding_dtype)


__all__ = [
    "SEGMENT_ON",
    "PendingSegments",
    "SegmentedRow",
    "device_segmentation_ready",
    "resolve_segment_on",
    "start_segmentation",
]
