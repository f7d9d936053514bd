"""Segmenter: audio in, syllable segments + segment embeddings out (the Sylber inference API).

>>> seg = Segmenter("sylber.ckpt", device="auto")          # doctest: +SKIP
>>> r = seg("utt.wav")                                      # doctest: +SKIP
>>> r.segments_seconds, r.embeddings.shape                  # doctest: +SKIP

``segment_many`` batches utterances by length through the toolkit's one batched inference
path (:class:`speechunits.encoders.batch.BatchEncoder`), which trims each utterance's
padding with the model's exact frame lengths; because the encoder is padding-invariant (see
:mod:`speechunits.encoders.model`) the results equal per-item calls. An utterance shorter
than the model's receptive field gets no frames and no segments.

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
from speechunits.encoders.batch import TOO_SHORT, BatchEncoder
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import AudioError
from speechunits.sylber.boundary_shift import shift_frames, shift_segment_frames, shift_segment_seconds
from speechunits.sylber.segment import greedy_segment_batch, segment_means, segments_to_seconds
from speechunits.sylber.thresholds import pick_shift, pick_thresholds

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


@dataclass
class SegmentationResult:
    """Segmentation of one utterance (frames at ``frame_rate``, half-open ``[start, end)``)."""

    segments_frames: np.ndarray  # (N, 2) int64
    segments_seconds: np.ndarray  # (N, 2) float64
    embeddings: np.ndarray  # (N, D) float32 segment means of hidden_states
    hidden_states: np.ndarray  # (T, D) float32 last-layer features
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
        encoder = BatchEncoder(self.model, batch_seconds=batch_seconds, device=self.device, autocast=self.autocast)
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

    def _results(self, waves: Sequence[np.ndarray], states: list[np.ndarray]) -> list[SegmentationResult]:
        segs = greedy_segment_batch(states, norm_threshold=self.norm_threshold, merge_threshold=self.merge_threshold,
                                    reset_count=self.reset_count)
        out = []
        frames = shift_frames(self.shift, self.frame_rate)
        hop = int(self.model.config.hop_length)
        for wav, h, s in zip(waves, states, segs):
            s = np.asarray(s, dtype=np.int64).reshape(-1, 2)
            emb = segment_means(h, s) if len(s) else np.zeros((0, h.shape[1]), np.float32)
            seconds = segments_to_seconds(s, self.frame_rate)
            if self.shift != 0.0:
                seconds = shift_segment_seconds(seconds, self.shift, len(wav) / self.sample_rate)
                moved, keep = shift_segment_frames(s, frames, -(-len(wav) // hop))
                ok = seconds[keep, 1] > seconds[keep, 0]  # non-empty both in frames and in seconds
                s, seconds, emb = moved[ok], seconds[keep[ok]], emb[keep[ok]]
            out.append(SegmentationResult(
                segments_frames=s,
                segments_seconds=seconds,
                embeddings=emb,
                hidden_states=h,
                frame_rate=self.frame_rate,
                num_samples=len(wav),
                sample_rate=self.sample_rate,
                shift=self.shift,
                shift_frames=frames,
            ))
        return out

    def __call__(self, audio: AudioInput, sample_rate: int | None = None) -> SegmentationResult:
        """Segment one utterance (path, or array/tensor at ``sample_rate``, default the model's)."""
        wav = self.load(audio, sample_rate)
        return self._results([wav], self.encode([wav]))[0]

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
        progress: bool = False,
    ) -> list[SegmentationResult]:
        """Segment many utterances, in input order (batched as :meth:`encode_many` does)."""
        waves, states = self.encode_many(items, sample_rate, batch_seconds=batch_seconds, progress=progress,
                                         desc="segment")
        return self._results(waves, states)
