"""The one adapter over fairseq2's data pipeline: utterances -> padded, length-bucketed audio batches.

Stages (per rank)::

    plan      lengths from the manifest (num_samples + sample_rate) or the audio header; sort by
              length; pack greedily into buckets whose *padded* size, batch size x longest item,
              stays within ``max_batch_seconds``; optionally shuffle the bucket order (seeded)
    read      fairseq2 ``read_sequence(buckets)``
    shard     fairseq2 ``.shard(rank, world_size, allow_uneven=not drop_remainder)``
    decode    fairseq2 ``.map(load_bucket, num_parallel_calls=...)``: each bucket's files are read
              with :func:`speechunits.audio.load_audio` (soundfile decode, mono mix, torchaudio
              resample, validation: every failure is an AudioError), cropped, then zero-padded
              with fairseq2's ``Collater(pad_value=0)``
    prefetch  fairseq2 ``.prefetch(prefetch)``

Bucketing is planned from header lengths *before* decoding and sharding, rather than with the
streaming ``bucket_by_length`` after decoding: that way every rank decodes only its own shard
(not the whole corpus), buckets are globally length-sorted (least padding), and all ranks
agree on the plan, which makes the shards disjoint and, with ``drop_remainder=False``,
complete. With ``drop_remainder=True`` fairseq2 drops the last ``< world_size`` buckets so
every rank gets the same number of batches (what DDP needs).

fairseq2's own ``FileMapper`` + ``AudioDecoder`` are not used for decoding: the decoder does
not resample or mix channels, cannot run Kaldi ``wav.scp`` pipe commands, and reports bad
files with its own exceptions; :func:`speechunits.audio.load_audio` keeps all of that (and
the AudioError messages) in one place.

Bad audio never stops the job with ``on_error="report"``: the utterance is left out and
recorded in :attr:`AudioPipeline.skipped` with its reason. Utterances found bad while
planning (unreadable header, longer than a whole batch) are reported by rank 0 only, so the
skipped lists of all ranks together name each bad utterance once.
"""

from __future__ import annotations

import logging
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from fairseq2.data.data_pipeline import Collater, DataPipeline, read_sequence
from tqdm import tqdm

from speechunits.audio import load_audio, resampled_length
from speechunits.data.batching import pack_by_frames
from speechunits.data.utterance import Utterance, stored_length
from speechunits.errors import AudioError, ConfigError

logger = logging.getLogger(__name__)

OnError = Literal["report", "raise"]


@dataclass(frozen=True)
class AudioBatch:
    """A batch of mono waveforms at the pipeline's sample rate, zero-padded on the right."""

    ids: list[str]
    waveforms: torch.Tensor  # (B, T) float32
    lengths: torch.Tensor  # (B,) int64, valid samples per row
    offsets: torch.Tensor | None = None  # (B,) int64, first sample of each crop in its utterance


@dataclass(frozen=True)
class SkippedUtterance:
    """An utterance left out of the batches, and why.

    ``too_long`` holds the planned length (samples at the pipeline's rate) when the only reason
    is that the utterance is longer than a whole batch: its audio was not judged bad, and a
    caller may run it alone (:mod:`speechunits.encoders.batch` does). It is None for bad audio.
    """

    id: str
    audio: str
    reason: str
    too_long: int | None = None


def pack_buckets(lengths: Sequence[int], max_batch_samples: int, *, shuffle: bool, seed: int) -> list[list[int]]:
    """Indices of ``lengths`` packed into length-sorted buckets with ``len(bucket) * max(len) <= max_batch_samples``.

    Every length must be ``<= max_batch_samples``. With ``shuffle`` equal lengths are tie-broken
    and the bucket order is permuted, both from ``seed``; otherwise buckets go shortest first.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    buckets = pack_by_frames(sorted(order.tolist(), key=lambda i: lengths[i]), lengths, max_batch_samples)
    if shuffle:
        buckets = [buckets[j] for j in rng.permutation(len(buckets))]
    return buckets


def _crop_offset(seed: int, utt_id: str, excess: int, align: int = 1) -> int:
    """A crop start in ``[0, excess]``, a multiple of ``align``, fixed by (seed, utterance id)
    whatever the thread order."""
    choices = excess // align + 1
    return align * int(np.random.default_rng([seed, zlib.crc32(utt_id.encode("utf-8"))]).integers(0, choices))


class _BucketLoader:
    """The decode-and-pad function fairseq2 maps over buckets.

    It is a separate object holding only what decoding needs, so the fairseq2 pipeline does
    not reference its :class:`AudioPipeline` (a cycle the garbage collector cannot break,
    which kept fairseq2's worker threads alive until interpreter exit, where they crashed).
    """

    def __init__(self, utts: Sequence[Utterance], lengths: list[int | None], *, sample_rate: int,
                 crop: int | None, crop_align: int, seed: int) -> None:
        self.utts = list(utts)
        self.lengths = lengths
        self.sample_rate = sample_rate
        self.crop = crop
        self.crop_align = crop_align
        self.seed = seed
        self.collater = Collater(pad_value=0)

    def decode(self, idx: int) -> tuple[np.ndarray, int]:
        """Decode, check against the planned length, and crop one utterance: (wave, crop start)."""
        utt = self.utts[idx]
        wav = load_audio(utt.audio, self.sample_rate)
        planned = self.lengths[idx]
        uncropped = len(wav)
        start = 0
        if self.crop is not None and len(wav) > self.crop:
            start = _crop_offset(self.seed, utt.id, len(wav) - self.crop, self.crop_align)
            wav = wav[start : start + self.crop]
        if len(wav) != planned:
            raise AudioError(
                utt.audio,
                f"decoded {uncropped} samples at {self.sample_rate} Hz but the manifest/header gave a length "
                f"of {planned} after cropping; the manifest is stale or the file is damaged",
            )
        return wav, start

    def __call__(self, bucket: Sequence[int]) -> dict[str, Any]:
        """Map function run by fairseq2 (possibly in parallel): decode and pad one bucket."""
        ids: list[str] = []
        wavs: list[torch.Tensor] = []
        offsets: list[int] = []
        failed: list[list[Any]] = []
        for idx in bucket:
            try:
                wav, start = self.decode(int(idx))
            except AudioError as err:
                failed.append([int(idx), str(err.path) if err.path is not None else self.utts[idx].audio, err.problem])
                continue
            ids.append(self.utts[idx].id)
            wavs.append(torch.from_numpy(wav))
            offsets.append(start)
        out: dict[str, Any] = {"ids": ids, "failed": failed, "offsets": offsets}
        if wavs:
            collated = self.collater(wavs)
            out["waveforms"] = collated["seqs"].to(torch.float32)
            out["lengths"] = torch.as_tensor(collated["seq_lens"], dtype=torch.int64)
        return out


class AudioPipeline:
    """Iterable of :class:`AudioBatch` for one rank; re-iterable (each pass restarts the epoch).

    Build it with :func:`build_audio_pipeline`.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        lengths: list[int | None],
        plan_skipped: list[SkippedUtterance],
        *,
        sample_rate: int,
        max_batch_samples: int,
        crop_samples: int | None,
        crop_align: int = 1,
        rank: int,
        world_size: int,
        shuffle: bool,
        seed: int,
        num_parallel_calls: int,
        prefetch: int,
        drop_remainder: bool,
        on_error: OnError,
    ) -> None:
        self._utts = list(utts)
        self._lengths = lengths
        self._sample_rate = sample_rate
        self._crop = crop_samples
        self._crop_align = crop_align
        self._seed = seed
        self._on_error = on_error
        self._loader = _BucketLoader(self._utts, lengths, sample_rate=sample_rate, crop=crop_samples,
                                     crop_align=crop_align, seed=seed)
        self._plan_skipped = plan_skipped if rank == 0 else []
        usable = [i for i, n in enumerate(lengths) if n is not None]
        buckets = pack_buckets([lengths[i] or 0 for i in usable], max_batch_samples, shuffle=shuffle, seed=seed)
        self.buckets: list[list[int]] = [[usable[j] for j in b] for b in buckets]
        self._pipeline: DataPipeline = (
            read_sequence(self.buckets)
            .shard(rank, world_size, allow_uneven=not drop_remainder)
            .map(self._loader, num_parallel_calls=num_parallel_calls)
            .prefetch(prefetch)
            .and_return()
        )
        self._num_batches = (
            len(self.buckets) // world_size
            if drop_remainder
            else len(range(rank, len(self.buckets), world_size))
        )
        self.skipped: list[SkippedUtterance] = list(self._plan_skipped)
        self._resuming = False

    def __len__(self) -> int:
        """Number of buckets this rank reads (a bucket whose files are all bad yields no batch)."""
        return self._num_batches

    def close(self) -> None:
        """Release fairseq2's pipeline (and its threads) now; the object cannot be iterated after."""
        self._pipeline = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[AudioBatch]:
        """One pass over this rank's batches (from the start, or from a loaded state)."""
        if self._pipeline is None:
            raise RuntimeError("AudioPipeline is closed")
        if not self._resuming:
            self._pipeline.reset()
        self._resuming = False
        self.skipped = list(self._plan_skipped)
        for item in self._pipeline:
            for idx, path, problem in item["failed"]:
                if self._on_error == "raise":
                    raise AudioError(path, problem)
                self._report(SkippedUtterance(self._utts[idx].id, self._utts[idx].audio, f"{path}: {problem}"))
            if item["ids"]:
                yield AudioBatch(ids=list(item["ids"]), waveforms=item["waveforms"], lengths=item["lengths"],
                                 offsets=torch.as_tensor(item["offsets"], dtype=torch.int64))

    def _report(self, skipped: SkippedUtterance) -> None:
        logger.warning("skipping utterance %s: %s", skipped.id, skipped.reason)
        self.skipped.append(skipped)

    def state_dict(self) -> dict[str, Any]:
        """fairseq2's pipeline position, for resuming mid-epoch."""
        return self._pipeline.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`; the next iteration continues from there."""
        self._pipeline.load_state_dict(state)
        self._resuming = True


def _planned_lengths(
    utts: Sequence[Utterance], sample_rate: int, crop_samples: int | None, max_batch_samples: int, on_error: OnError
) -> tuple[list[int | None], list[SkippedUtterance]]:
    """Length of each utterance in the batch (None: skipped, with the reason; raised with ``on_error="raise"``)."""
    lengths: list[int | None] = []
    skipped: list[SkippedUtterance] = []
    for utt in tqdm(utts, desc="audio lengths", unit="utt", file=sys.stderr, disable=None):
        try:
            n, sr = stored_length(utt)
        except AudioError as err:
            if on_error == "raise":
                raise
            skipped.append(SkippedUtterance(utt.id, utt.audio, str(err)))
            lengths.append(None)
            continue
        length = resampled_length(n, sr, sample_rate)
        if crop_samples is not None:
            length = min(length, crop_samples)
        if length > max_batch_samples:
            reason = (
                f"{length / sample_rate:.2f} s is longer than max_batch_seconds "
                f"({max_batch_samples / sample_rate:.2f} s); raise it or set crop_seconds"
            )
            if on_error == "raise":
                raise AudioError(utt.audio, reason)
            skipped.append(SkippedUtterance(utt.id, utt.audio, reason, too_long=length))
            lengths.append(None)
            continue
        lengths.append(length)
    return lengths, skipped


def _check_options(
    sample_rate: int, max_batch_seconds: float, crop_seconds: float | None, rank: int, world_size: int,
    num_parallel_calls: int, prefetch: int, on_error: str,
) -> None:
    """ConfigError for option values the pipeline cannot honour."""
    problems = []
    if sample_rate <= 0:
        problems.append(f"sample_rate must be positive, got {sample_rate}")
    if not max_batch_seconds > 0:
        problems.append(f"max_batch_seconds must be positive, got {max_batch_seconds}")
    if crop_seconds is not None and not crop_seconds > 0:
        problems.append(f"crop_seconds must be positive or None, got {crop_seconds}")
    if world_size < 1 or not 0 <= rank < world_size:
        problems.append(f"expected 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    if num_parallel_calls < 1 or prefetch < 0:
        problems.append(f"num_parallel_calls must be >= 1 and prefetch >= 0, got {num_parallel_calls}, {prefetch}")
    if on_error not in ("report", "raise"):
        problems.append(f"on_error must be 'report' or 'raise', got {on_error!r}")
    if problems:
        raise ConfigError(None, "; ".join(problems))


def build_audio_pipeline(
    utts: Sequence[Utterance],
    *,
    sample_rate: int = 16000,
    max_batch_seconds: float,
    crop_seconds: float | None = None,
    crop_align: int = 1,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    num_parallel_calls: int = 2,
    prefetch: int = 2,
    drop_remainder: bool = False,
    on_error: OnError = "report",
) -> AudioPipeline:
    """Length-bucketed, sharded, prefetched batches of ``utts`` for rank ``rank`` of ``world_size``.

    Each batch holds at most ``max_batch_seconds`` of *padded* audio (batch size x longest
    item). ``crop_seconds`` cuts longer utterances to a window at a seeded random offset.
    Identical arguments give identical batches on every run; ranks given the same ``seed``
    read disjoint buckets that together cover every usable utterance. With
    ``on_error="raise"`` the first bad utterance raises its AudioError instead of being
    reported in :attr:`AudioPipeline.skipped`.
    """
    _check_options(
        sample_rate, max_batch_seconds, crop_seconds, rank, world_size, num_parallel_calls, prefetch, on_error
    )
    max_batch_samples = int(max_batch_seconds * sample_rate)
    crop_samples = None if crop_seconds is None else max(1, int(round(crop_seconds * sample_rate)))
    lengths, plan_skipped = _planned_lengths(utts, sample_rate, crop_samples, max_batch_samples, on_error)
    for s in plan_skipped if rank == 0 else ():
        logger.warning("skipping utterance %s: %s", s.id, s.reason)
    return AudioPipeline(
        utts, lengths, plan_skipped, sample_rate=sample_rate, max_batch_samples=max_batch_samples,
        crop_samples=crop_samples, crop_align=max(1, int(crop_align)), rank=rank, world_size=world_size, shuffle=shuffle, seed=seed,
        num_parallel_calls=num_parallel_calls, prefetch=prefetch, drop_remainder=drop_remainder, on_error=on_error,
    )


def training_crops(
    utts: Sequence[Utterance],
    *,
    epoch: int,
    seed: int,
    max_batch_seconds: float,
    crop_seconds: float,
    crop_align: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 2,
) -> Iterator[AudioBatch]:
    """One epoch of seeded, shuffled training crops for ``rank`` (what a self-supervised task's
    ``batches(epoch)`` yields); under DDP every rank gets the same number of batches. The
    pipeline's threads are stopped when the iteration ends or is abandoned."""
    pipe = build_audio_pipeline(
        utts, max_batch_seconds=max_batch_seconds, crop_seconds=crop_seconds, crop_align=crop_align,
        rank=rank, world_size=world_size, shuffle=True, seed=seed * 100_003 + epoch,
        num_parallel_calls=num_workers, drop_remainder=world_size > 1,
    )
    try:
        yield from pipe
    finally:
        pipe.close()  # stop fairseq2's threads now, not at interpreter exit
