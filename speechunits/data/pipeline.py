"""The one data-pipeline adapter: utterances -> padded, length-bucketed audio batches, on
fairseq2's data pipeline or on ``torch.utils.data``, with the same batches either way.

Stages (per rank)::

    plan      lengths from the manifest (num_samples + sample_rate) or the audio header; sort by
              length; pack greedily into buckets whose *padded* size, batch size x longest item,
              stays within ``max_batch_seconds`` (and, with ``max_padding``, whose padding ratio
              stays within it); optionally shuffle the bucket order (seeded)
    shard     buckets[rank::world_size]; with ``drop_remainder`` only the first
              ``len(buckets) // world_size`` of them, so every rank reads as many
    decode    :class:`_BucketLoader`, in parallel: each bucket's files are read with
              :func:`speechunits.audio.load_audio` (soundfile decode, mono mix, torchaudio
              resample, validation: every failure is an AudioError), cropped, zero-padded
    prefetch  up to ``prefetch`` decoded buckets ahead; ``pin_memory`` pins them for the GPU

The two backends run the same plan and the same decode function and differ only in how they
run it (:mod:`speechunits.data.pipeline_fairseq2`: ``read_sequence .shard .map .prefetch``,
worker threads; :mod:`speechunits.data.pipeline_torch`: a ``DataLoader``, worker processes).
``backend="auto"`` (or the environment variable ``SPEECHUNITS_DATA_BACKEND``) takes fairseq2
when it imports and was built for the installed torch (fairseq2n 0.8.1 needs exactly torch
2.9.1), else torch: the toolkit runs on any recent torch, with or without the ``fairseq2``
extra. fairseq2 is imported only when its backend is chosen.

Bucketing is planned from header lengths *before* decoding and sharding, rather than with a
streaming bucketer after decoding: that way every rank decodes only its own shard (not the
whole corpus), buckets are globally length-sorted (least padding), and all ranks agree on the
plan, which makes the shards disjoint and, with ``drop_remainder=False``, complete.

fairseq2's own ``FileMapper`` + ``AudioDecoder`` are not used for decoding: the decoder does
not resample or mix channels, cannot run Kaldi ``wav.scp`` pipe commands, and reports bad
files with its own exceptions; :func:`speechunits.audio.load_audio` keeps all of that (and
the AudioError messages) in one place, for both backends.

Bad audio never stops the job with ``on_error="report"``: the utterance is left out and
recorded in :attr:`AudioPipeline.skipped` with its reason. Utterances found bad while
planning (unreadable header, longer than a whole batch) are reported by rank 0 only, so the
skipped lists of all ranks together name each bad utterance once.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from tqdm import tqdm

from speechunits.audio import load_audio, resampled_length
from speechunits.data.batching import pack_by_frames
from speechunits.data.pipeline_torch import TorchReader
from speechunits.data.utterance import Utterance, stored_length
from speechunits.errors import AudioError, ConfigError

logger = logging.getLogger(__name__)

OnError = Literal["report", "raise"]
Backend = Literal["auto", "fairseq2", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "fairseq2", "torch")
BACKEND_ENV = "SPEECHUNITS_DATA_BACKEND"


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


def pack_buckets(lengths: Sequence[int], max_batch_samples: int, *, shuffle: bool, seed: int,
                 max_padding: float | None = None) -> list[list[int]]:
    """Indices of ``lengths`` packed into length-sorted buckets with ``len(bucket) * max(len) <= max_batch_samples``.

    Every length must be ``<= max_batch_samples``. With ``max_padding`` a bucket also closes
    before its padding ratio ``1 - sum(len) / (len(bucket) * max(len))`` would exceed it (short
    and long utterances then stop sharing a batch even when the budget allows it). With
    ``shuffle`` equal lengths are tie-broken and the bucket order is permuted, both from
    ``seed``; otherwise buckets go shortest first.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    buckets = pack_by_frames(sorted(order.tolist(), key=lambda i: lengths[i]), lengths, max_batch_samples,
                             max_padding=max_padding)
    if shuffle:
        buckets = [buckets[j] for j in rng.permutation(len(buckets))]
    return buckets


def shard_buckets(buckets: Sequence[Sequence[int]], rank: int, world_size: int,
                  drop_remainder: bool) -> list[list[int]]:
    """The buckets rank ``rank`` reads: every ``world_size``-th from ``rank``; with
    ``drop_remainder`` the last ``len(buckets) % world_size`` are left out for all ranks
    (fairseq2's ``shard(allow_uneven=False)``), so every rank reads as many."""
    mine = [list(b) for b in buckets[rank::world_size]]
    return mine[: len(buckets) // world_size] if drop_remainder else mine


def _crop_offset(seed: int, utt_id: str, excess: int, align: int = 1) -> int:
    """A crop start in ``[0, excess]``, a multiple of ``align``, fixed by (seed, utterance id)
    whatever the thread order."""
    choices = excess // align + 1
    return align * int(np.random.default_rng([seed, zlib.crc32(utt_id.encode("utf-8"))]).integers(0, choices))


def pad_waveforms(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-zero-padded ``(B, max_len)`` float32 batch and its ``(B,)`` int64 lengths."""
    lengths = [len(w) for w in waves]
    batch = np.zeros((len(waves), max(lengths, default=0)), np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return torch.from_numpy(batch), torch.tensor(lengths, dtype=torch.long)


class _BucketLoader:
    """The decode-and-pad function both backends map over buckets (in threads or processes).

    It is a separate object holding only what decoding needs (picklable, for worker
    processes), so a backend's pipeline does not reference its :class:`AudioPipeline` (with
    fairseq2 such a cycle kept its worker threads alive until interpreter exit, where they
    crashed). It returns plain data and never raises for bad audio: failures travel back as
    ``(index, path, problem)`` rows, which is how ``on_error`` applies in the consumer.
    """

    def __init__(self, utts: Sequence[Utterance], lengths: list[int | None], *, sample_rate: int,
                 crop: int | None, crop_align: int, seed: int, pin_memory: bool = False) -> None:
        self.utts = list(utts)
        self.lengths = lengths
        self.sample_rate = sample_rate
        self.crop = crop
        self.crop_align = crop_align
        self.seed = seed
        self.pin_memory = pin_memory  # only where the loader runs in the consumer's process (threads)

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
        """Decode and pad one bucket: ids, offsets, failed rows and (when any decoded) waveforms, lengths."""
        ids: list[str] = []
        wavs: list[np.ndarray] = []
        offsets: list[int] = []
        failed: list[list[Any]] = []
        for idx in bucket:
            try:
                wav, start = self.decode(int(idx))
            except AudioError as err:
                failed.append([int(idx), str(err.path) if err.path is not None else self.utts[idx].audio, err.problem])
                continue
            ids.append(self.utts[idx].id)
            wavs.append(wav)
            offsets.append(start)
        out: dict[str, Any] = {"ids": ids, "failed": failed, "offsets": offsets}
        if wavs:
            waveforms, lengths = pad_waveforms(wavs)
            out["waveforms"] = waveforms.pin_memory() if self.pin_memory else waveforms
            out["lengths"] = lengths
        return out


class _Reader(Protocol):
    """What a backend module provides: the decoded buckets of one rank, in plan order."""

    def batches(self, resume: bool) -> Iterator[dict[str, Any]]:
        """One pass of :class:`_BucketLoader` outputs; from the loaded position when ``resume``."""

    def state_dict(self) -> dict[str, Any]:
        """The position after the last output handed out."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position from :meth:`state_dict`."""

    def close(self) -> None:
        """Stop worker threads/processes now."""


def pin_memory_wanted(pin_memory: bool) -> bool:
    """Pinned host memory only helps (and only works) with a CUDA device: elsewhere a no-op."""
    return bool(pin_memory) and torch.cuda.is_available()


def _fairseq2n_torch_build() -> tuple[str | None, str]:
    """(torch version fairseq2n was built for, or None; where it was looked up / why not),
    read from ``fairseq2n/config.py`` without importing fairseq2n (whose native library may
    not load with another torch)."""
    try:
        spec = importlib.util.find_spec("fairseq2n")
    except (ImportError, ValueError) as err:
        return None, f"fairseq2n cannot be imported ({err})"
    if spec is None or not spec.submodule_search_locations:
        return None, "fairseq2n is not installed (install the extra: pip install -e '.[fairseq2]')"
    config = Path(next(iter(spec.submodule_search_locations))) / "config.py"
    try:
        text = config.read_text()
    except OSError as err:
        return None, f"cannot read {config}: {err}"
    for line in text.splitlines():
        if line.startswith("_TORCH_VERSION"):
            return line.split("=", 1)[1].strip().strip("'\""), str(config)
    return None, f"{config} records no _TORCH_VERSION"


@lru_cache(maxsize=1)
def fairseq2_unusable() -> str | None:
    """Why the fairseq2 backend cannot run here, or None when it can: fairseq2n must have been
    built for the installed torch (same version, local label aside) and ``fairseq2.data`` must
    import. Checked in that order, so a mismatched native library is never loaded."""
    built, where = _fairseq2n_torch_build()
    if built is None:
        return where
    installed = str(torch.__version__)
    if built.split("+", 1)[0] != installed.split("+", 1)[0]:
        return f"fairseq2n was built for torch {built} ({where}) but torch {installed} is installed"
    try:
        importlib.import_module("fairseq2.data.data_pipeline")
    except Exception as err:  # noqa: BLE001 - any failure to import means the backend is unusable
        return f"import fairseq2.data failed: {type(err).__name__}: {err}"
    return None


_announced: set[str] = set()


def resolve_backend(backend: str = "auto") -> str:
    """The backend to run, "fairseq2" or "torch", for ``backend`` ("auto", "fairseq2", "torch").

    An explicit ``backend`` wins; with "auto" the environment variable
    ``SPEECHUNITS_DATA_BACKEND`` (same values) decides, and "auto" there takes fairseq2 when
    :func:`fairseq2_unusable` finds nothing against it. Asking for fairseq2 where it cannot run
    is a ConfigError saying why. The automatic choice is logged once per process.
    """
    source = "backend argument"
    if backend == "auto":
        backend, source = os.environ.get(BACKEND_ENV, "auto").strip() or "auto", BACKEND_ENV
    if backend not in BACKENDS:
        raise ConfigError(None, f"{source}: data backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    why_not = fairseq2_unusable()
    if backend == "fairseq2":
        if why_not is not None:
            raise ConfigError(None, f"{source} asks for the fairseq2 data backend, but it cannot be used: {why_not}; "
                                    f"use backend 'torch' or 'auto'")
        return "fairseq2"
    chosen, why = ("torch", why_not) if why_not else ("fairseq2", "it imports and matches the installed torch")
    message = f"data pipeline backend: {chosen} ({why})"
    if message not in _announced:
        _announced.add(message)
        logger.info(message)
    return chosen


class AudioPipeline:
    """Iterable of :class:`AudioBatch` for one rank; re-iterable (each pass restarts the epoch).

    Build it with :func:`build_audio_pipeline`. :attr:`backend` names the backend it runs on.
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
        backend: str = "torch",
        pin_memory: bool = False,
        max_padding: float | None = None,
    ) -> None:
        self._utts = list(utts)
        self._on_error = on_error
        self.backend = backend
        self._plan_skipped = plan_skipped if rank == 0 else []
        usable = [i for i, n in enumerate(lengths) if n is not None]
        buckets = pack_buckets([lengths[i] or 0 for i in usable], max_batch_samples, shuffle=shuffle, seed=seed,
                               max_padding=max_padding)
        self.buckets: list[list[int]] = [[usable[j] for j in b] for b in buckets]
        mine = shard_buckets(self.buckets, rank, world_size, drop_remainder)
        self._num_batches = len(mine)
        plan = json.dumps([self.buckets, rank, world_size, drop_remainder], separators=(",", ":"))
        self._plan_id = f"{zlib.crc32(plan.encode()):08x}"
        pin = pin_memory_wanted(pin_memory)
        self._reader: _Reader | None
        if backend == "fairseq2":
            from speechunits.data.pipeline_fairseq2 import Fairseq2Reader

            loader = _BucketLoader(self._utts, lengths, sample_rate=sample_rate, crop=crop_samples,
                                   crop_align=crop_align, seed=seed, pin_memory=pin)
            self._reader = Fairseq2Reader(self.buckets, loader, rank=rank, world_size=world_size,
                                          drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls,
                                          prefetch=prefetch)
        elif backend == "torch":
            loader = _BucketLoader(self._utts, lengths, sample_rate=sample_rate, crop=crop_samples,
                                   crop_align=crop_align, seed=seed)
            self._reader = TorchReader(mine, loader, num_workers=num_parallel_calls, prefetch=prefetch,
                                       pin_memory=pin)
        else:
            raise ConfigError(None, f"data backend must be 'fairseq2' or 'torch' here, got {backend!r}")
        self.skipped: list[SkippedUtterance] = list(self._plan_skipped)
        self._resuming = False

    def __len__(self) -> int:
        """Number of buckets this rank reads (a bucket whose files are all bad yields no batch)."""
        return self._num_batches

    def close(self) -> None:
        """Stop the backend's worker threads or processes now; the object cannot be iterated after."""
        if self._reader is not None:
            self._reader.close()
        self._reader = None

    def __iter__(self) -> Iterator[AudioBatch]:
        """One pass over this rank's batches (from the start, or from a loaded state)."""
        if self._reader is None:
            raise RuntimeError("AudioPipeline is closed")
        resume, self._resuming = self._resuming, False
        self.skipped = list(self._plan_skipped)
        for item in self._reader.batches(resume):
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
        """The position after the last batch handed out, for resuming mid-epoch (same backend, same plan)."""
        if self._reader is None:
            raise RuntimeError("AudioPipeline is closed")
        return {"backend": self.backend, "plan": self._plan_id, "reader": self._reader.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`; the next iteration continues from there.

        A state of the other backend, or of another bucket plan (other utterances, options,
        rank or world size), is a ConfigError: positions are not portable between them.
        """
        if self._reader is None:
            raise RuntimeError("AudioPipeline is closed")
        if not isinstance(state, Mapping) or "backend" not in state or "reader" not in state:
            raise ConfigError(None, "not a data pipeline state (expected the dict AudioPipeline.state_dict returns)")
        if state["backend"] != self.backend:
            raise ConfigError(None, f"the data pipeline state was saved by the {state['backend']} backend and cannot "
                                    f"resume the {self.backend} backend; run with backend={state['backend']!r} "
                                    f"(or {BACKEND_ENV}={state['backend']})")
        if state.get("plan") != self._plan_id:
            raise ConfigError(None, "the data pipeline state was saved for another bucket plan (other utterances, "
                                    "batch size, seed, rank or world size); it cannot resume this pipeline")
        self._reader.load_state_dict(state["reader"])
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
    num_parallel_calls: int, prefetch: int, on_error: str, max_padding: float | None = None,
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
    if num_parallel_calls < 0 or prefetch < 0:
        problems.append(f"num_parallel_calls and prefetch must be >= 0, got {num_parallel_calls}, {prefetch}")
    if max_padding is not None and not 0 <= max_padding < 1:
        problems.append(f"max_padding must be a fraction in [0, 1) or None, got {max_padding}")
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
    backend: Backend = "auto",
    pin_memory: bool = False,
    max_padding: float | None = None,
) -> AudioPipeline:
    """Length-bucketed, sharded, prefetched batches of ``utts`` for rank ``rank`` of ``world_size``.

    Each batch holds at most ``max_batch_seconds`` of *padded* audio (batch size x longest
    item). ``crop_seconds`` cuts longer utterances to a window at a seeded random offset.
    Identical arguments give identical batches on every run; ranks given the same ``seed``
    read disjoint buckets that together cover every usable utterance. With
    ``on_error="raise"`` the first bad utterance raises its AudioError instead of being
    reported in :attr:`AudioPipeline.skipped`.

    ``num_parallel_calls`` buckets are decoded at once (fairseq2: threads; torch: DataLoader
    worker processes, none with 0) and up to ``prefetch`` decoded buckets wait ahead (torch:
    ``ceil(prefetch / workers)`` per worker, at least one; none without workers).
    ``max_padding`` bounds each batch's padding ratio (see :func:`pack_buckets`); None keeps
    the plan that only the padded size bounds. ``pin_memory`` returns waveforms in pinned host
    memory when CUDA is available (a no-op otherwise). ``backend``: see :func:`resolve_backend`.
    Both backends give identical batches.
    """
    _check_options(
        sample_rate, max_batch_seconds, crop_seconds, rank, world_size, num_parallel_calls, prefetch, on_error,
        max_padding,
    )
    chosen = resolve_backend(backend)
    max_batch_samples = int(max_batch_seconds * sample_rate)
    crop_samples = None if crop_seconds is None else max(1, int(round(crop_seconds * sample_rate)))
    lengths, plan_skipped = _planned_lengths(utts, sample_rate, crop_samples, max_batch_samples, on_error)
    for s in plan_skipped if rank == 0 else ():
        logger.warning("skipping utterance %s: %s", s.id, s.reason)
    return AudioPipeline(
        utts, lengths, plan_skipped, sample_rate=sample_rate, max_batch_samples=max_batch_samples,
        crop_samples=crop_samples, crop_align=max(1, int(crop_align)), rank=rank, world_size=world_size,
        shuffle=shuffle, seed=seed,
        num_parallel_calls=num_parallel_calls, prefetch=prefetch, drop_remainder=drop_remainder, on_error=on_error,
        backend=chosen, pin_memory=pin_memory, max_padding=max_padding,
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
    pipeline's worker threads or processes are stopped when the iteration ends or is abandoned."""
    pipe = build_audio_pipeline(
        utts, max_batch_seconds=max_batch_seconds, crop_seconds=crop_seconds, crop_align=crop_align,
        rank=rank, world_size=world_size, shuffle=True, seed=seed * 100_003 + epoch,
        num_parallel_calls=num_workers, drop_remainder=world_size > 1,
    )
    try:
        yield from pipe
    finally:
        pipe.close()  # stop the workers now, not at interpreter exit
