"""One tokenization job: a shard of a corpus -> syllable segments (+ embeddings) in a unit set.

The shard, its resume and its files come from the job runner (:mod:`speechunits.jobs`) with
its unit-set output (:mod:`speechunits.units.shard_output`): utterances sorted by id and
dealt round-robin, a resumable writer whose finished ids are
skipped (a killed run loses at most the utterances in flight), a partial shard of a
different config deleted first, ``bad_utts.J.txt`` + ``units.J.jsonl`` + the record
``tokenize.J.json`` written at the end. What is tokenize's own:

1. **Audio + encoder.** The shard's remaining utterances go through the one batched inference
   path (:class:`~speechunits.encoders.batch.BatchEncoder`): parallel decoding by the data
   pipeline (``num_workers`` calls, ``prefetch`` batches ahead), length-sorted buckets of at
   most ``batch_seconds`` padded audio and, when ``max_batch_frames`` is set, at most that many
   padded encoder frames (the smaller budget wins; the frame budget bounds device memory), one
   forward pass per bucket under ``torch.inference_mode()`` (bf16 autocast on CUDA;
   ``torch.compile`` with ``compile``, eager if compiling fails), rows trimmed to their exact
   frame counts; an utterance longer than a batch runs alone afterwards.
2. **Segmentation + writing.** Greedy segmentation and segment means run where the features
   are (:mod:`speechunits.sylber.segment_batch`, ``segment_on``): with ``auto`` on a CUDA
   encoder whose device kernels are available, on the device, and only segments (int32) and
   float16 segment means are copied back (asynchronously, into pinned memory); otherwise on
   the host, one parallel numba call per batch. Collecting the results and ``writer.add`` run
   on a worker thread (:class:`~speechunits.tokenize.overlap.OverlapWorker`) while the main
   thread runs the next batch's forward pass. Embeddings are stored float16 by the writer.
   The boundary shift (``settings.shift`` seconds: the checkpoint's ``shift`` unless
   ``--shift`` is given) moves the segments by whole frames after the embeddings are taken,
   clipped to the audio (:mod:`speechunits.sylber.boundary_shift`); a non-zero shift is
   recorded in the producer (``shift`` applied, ``shift_frames``, ``shift_requested``), so
   boundary evaluation knows the set carries it. Each record holds the audio file's own ``num_samples`` and ``sample_rate`` (the unit
   format's rule, checked by ``validate-units --check-audio``), from the manifest when it
   records them, else from the file's header: the lengths the data pipeline planned with and
   checked the decoded audio against. The frames count at the model's rate (``meta.json``).
3. **Bad utterances** (bad audio, too short for one frame, non-finite features, features the
   segmenter rejects) are listed in ``bad_utts.J.txt`` with their reason.
4. **Given segments** (``--segments UNIT_DIR``, :mod:`speechunits.tokenize.given`): the greedy
   segmentation is replaced by another unit set's spans, and the embeddings are the model's
   means over them; the producer block says ``segmenter: "given"`` with the set's path and its own
   producer (the ``units.jsonl`` hash is in the job config), the output's kind is the set's. Utterances the set lacks are bad
   items, dropped before encoding.

Test hook: the environment variable ``SPEECHUNITS_JOB_DELAY`` (seconds) sleeps after each
batch is written, so a test can kill a job mid-way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.data.utterance import Utterance, manifest_fingerprint, stored_length
from speechunits.device import resolve_device
from speechunits.encoders.batch import BatchEncoder, Encoded, EncodeFailure
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import AudioError, ConfigError
from speechunits.io_utils import sha256_path
from speechunits.jobs import DELAY_ENV, JobRunner, ShardReport, ShardRun, limit_threads
from speechunits.units.shard_output import UnitShardWriter, unit_set_runner
from speechunits.sylber.boundary_shift import shift_frames, shift_producer, shift_segment_frames
from speechunits.sylber.segment import segment_means
from speechunits.sylber.segment_batch import SEGMENT_ON, PendingSegments, resolve_segment_on, start_segmentation
from speechunits.sylber.thresholds import DEFAULT_MERGE_THRESHOLD, DEFAULT_NORM_THRESHOLD
from speechunits.tokenize.given import SEGMENTER as GIVEN, GivenSegments, SegmentSet, check_frame_rate
from speechunits.tokenize.overlap import OverlapWorker

logger = logging.getLogger(__name__)

VERB = "tokenize"
SEGMENTER = "sylber-greedy"


@dataclass(frozen=True)
class TokenizeSettings:
    """Everything one tokenization run needs (the CLI flags)."""

    model: Path
    data: Path
    out: Path
    nj: int = 1
    norm_threshold: float = DEFAULT_NORM_THRESHOLD
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD
    reset_count: bool = False
    shift: float = 0.0
    """Seconds added to every boundary (rounded to whole frames); unused with ``segments``."""
    embeddings: bool = True
    batch_seconds: float = 60.0
    """Padded audio per forward pass; ``math.inf`` (only with ``max_batch_frames``): no seconds cap."""
    max_batch_frames: int | None = None
    """Padded encoder frames per forward pass (B x T_frames); the smaller of this and ``batch_seconds`` wins."""
    num_workers: int = 2
    prefetch: int = 2
    compile: bool = False
    segment_on: str = "auto"
    """``auto``, ``host`` or ``device`` (:func:`speechunits.sylber.segment_batch.resolve_segment_on`)."""
    pin_memory: bool = True
    max_padding: float | None = 0.1
    """Data-pipeline options, handed to :meth:`~speechunits.encoders.batch.BatchEncoder.pipeline_options`:
    pinned host batches (CUDA only) and the largest padding ratio of a length bucket."""
    device: str = "auto"
    threads: int | None = None
    segments: SegmentSet | None = None
    """Spans to pool over instead of greedy segmentation (:func:`speechunits.tokenize.given.open_segment_set`)."""

    def check(self) -> None:
        """ConfigError for values no job can honour."""
        problems = []
        if self.nj < 1:
            problems.append(f"--nj must be >= 1, got {self.nj}")
        if not self.batch_seconds > 0 or (math.isinf(self.batch_seconds) and self.max_batch_frames is None):
            problems.append(f"--batch-seconds must be > 0 (and finite without --max-batch-frames), got "
                            f"{self.batch_seconds}")
        if self.max_batch_frames is not None and self.max_batch_frames < 1:
            problems.append(f"--max-batch-frames must be >= 1, got {self.max_batch_frames}")
        if self.num_workers < 1:
            problems.append(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.prefetch < 1:
            problems.append(f"--prefetch must be >= 1, got {self.prefetch}")
        if self.segment_on not in SEGMENT_ON:
            problems.append(f"--segment-on must be one of {', '.join(SEGMENT_ON)}, got {self.segment_on!r}")
        if self.max_padding is not None and not 0 <= self.max_padding < 1:
            problems.append(f"--max-padding must be in [0, 1), got {self.max_padding}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads must be >= 1, got {self.threads}")
        if not math.isfinite(self.shift):
            problems.append(f"--shift must be a finite number of seconds, got {self.shift}")
        if not (self.norm_threshold >= 0 and -1 <= self.merge_threshold <= 1):
            problems.append(f"need --norm-threshold >= 0 and -1 <= --merge-threshold <= 1, got "
                            f"{self.norm_threshold}, {self.merge_threshold}")
        if problems:
            raise ConfigError(None, "; ".join(problems))


# ------------------------------------------------------------------ config / provenance
def producer(settings: TokenizeSettings, model: SpeechEncoder, model_hash: str) -> dict[str, Any]:
    """The ``producer`` block of ``meta.json`` (no thresholds or shift with given segments: they play no part).

    A non-zero boundary shift adds ``shift`` (seconds applied, whole frames), ``shift_frames`` and
    ``shift_requested``; without these keys the set carries no shift.
    """
    model_block = {"path": str(settings.model), "sha256": model_hash, "config": model.config.to_dict()}
    if settings.segments is not None:
        return {"segmenter": GIVEN, "segments": settings.segments.producer(), "model": model_block}
    block = {
        "segmenter": SEGMENTER,
        "model": model_block,
        "norm_threshold": settings.norm_threshold,
        "merge_threshold": settings.merge_threshold,
        "reset_count": settings.reset_count,
    }
    if settings.shift != 0.0:
        block.update(shift_producer(settings.shift, float(model.frame_rate)))
    return block


def effective_config(settings: TokenizeSettings, model: SpeechEncoder, model_hash: str,
                     utts: list[Utterance]) -> dict[str, Any]:
    """The config whose hash decides whether existing outputs are reusable.

    Batch size and frame budget, workers, prefetch, threads, device, compile and where segmentation
    runs are left out: they do not change the result (beyond float rounding).
    """
    config = {
        "verb": VERB,
        "producer": producer(settings, model, model_hash),
        "embeddings": settings.embeddings,
        "nj": settings.nj,
        "data": {"path": str(settings.data.resolve()), "utterances": len(utts), "sha256": manifest_fingerprint(utts)},
    }
    if settings.segments is not None:
        config["segments_sha256"] = settings.segments.sha256
    return config


def make_runner(settings: TokenizeSettings, model: SpeechEncoder, model_hash: str, utts: list[Utterance], *,
                progress: bool = True) -> JobRunner[UnitShardWriter]:
    """The job runner of a tokenization run (its config hash covers model, thresholds or given segments,
    data, nj). Given segments at another frame rate than the model's are a ConfigError here, before any work."""
    inputs = [settings.data, settings.model]
    if settings.segments is not None:
        check_frame_rate(settings.segments, int(model.config.sample_rate), int(model.config.hop_length))
        inputs.append(settings.segments.path / "units.jsonl")
    return unit_set_runner(VERB, utts=utts, out=settings.out, nj=settings.nj,
                           effective=effective_config(settings, model, model_hash, utts),
                           inputs=inputs, progress=progress)


# ------------------------------------------------------------------ model
def load_model(path: Path) -> SpeechEncoder:
    """The checkpoint's encoder on the CPU, in eval mode: a job moves it to its device when it runs a
    shard, so a parent that only launches local jobs holds no device memory while they run."""
    from speechunits.encoders.checkpoints import load_encoder

    return load_encoder(path, map_location="cpu").eval()


# ------------------------------------------------------------------ the job
class TokenizeJob:
    """Tokenize one shard (see the module docstring). Use :func:`run_job` unless you hold a model and runner."""

    def __init__(self, settings: TokenizeSettings, runner: JobRunner[UnitShardWriter], model: SpeechEncoder,
                 model_hash: str) -> None:
        self.settings = settings
        self.runner = runner
        self.model = model
        self.device = resolve_device(settings.device)
        self.model_hash = model_hash
        self.sample_rate = int(model.config.sample_rate)
        self.hop = int(model.config.hop_length)
        self.shift_frames = 0 if settings.segments is not None else shift_frames(settings.shift, float(model.frame_rate))
        self.given = GivenSegments(settings.segments) if settings.segments is not None else None

    def run(self, job: int) -> ShardReport:
        """Tokenize the unfinished utterances of shard ``job``; returns what this run did."""
        s = self.settings
        if not 0 <= job < s.nj:
            raise ConfigError(None, f"need 0 <= --job < --nj, got --job {job} --nj {s.nj}")
        self.model.to(self.device)
        kind = s.segments.kind if s.segments is not None else "syllable"
        with self.runner.open_shard(job, kind=kind, sample_rate=self.sample_rate,
                                    hop=int(self.model.config.hop_length), producer=producer(s, self.model, self.model_hash),
                                    source_manifest=str(s.data),
                                    embedding_dim=self.model.embed_dim if s.embeddings else None) as shard:
            with OverlapWorker(max_pending=2, name=f"tokenize{job}") as worker:
                self._run_batches(shard, worker)
        return shard.report

    def _encoder(self, keep_on_device: bool) -> BatchEncoder:
        s = self.settings
        return BatchEncoder(self.model, batch_seconds=s.batch_seconds, max_batch_frames=s.max_batch_frames,
                            device=self.device, compile=s.compile, keep_on_device=keep_on_device,
                            pin_memory=s.pin_memory, max_padding=s.max_padding)

    def _run_batches(self, shard: ShardRun[UnitShardWriter],
                     worker: OverlapWorker[tuple[int, float, list[str]]]) -> None:
        """Encode the shard's remaining utterances; each batch is segmented where its features are
        (given spans: on the host) and written on the worker thread."""
        s = self.settings
        todo = shard.todo
        if self.given is not None:  # utterances without given segments are not worth encoding
            missing = [u for u in todo if not self.given.has(u)]
            if missing:
                shard.progress(0, [self.given.missing_reason(u) for u in missing])
                todo = [u for u in todo if self.given.has(u)]
        by_id = {u.id: u for u in todo}
        where = None
        if self.given is None:
            try:
                where = resolve_segment_on(s.segment_on, self.device)
            except ValueError as err:
                raise ConfigError(None, f"--segment-on {s.segment_on}: {err}") from err
        encoder = self._encoder(keep_on_device=where is not None)

        def account(results: Any) -> None:
            for written, seconds, bad in results:
                shard.progress(written, bad, seconds)

        for batch in encoder.encode_utterances(todo, num_workers=s.num_workers, prefetch=s.prefetch):
            if where is None:
                task = worker.submit(self._write_given, shard, [(by_id[e.id], e) for e in batch.encoded], batch.failed)
            else:
                pending = None
                if batch.device is not None:
                    pending = start_segmentation(batch.device, where, norm_threshold=s.norm_threshold,
                                                 merge_threshold=s.merge_threshold, reset_count=s.reset_count,
                                                 embeddings=s.embeddings, embedding_dtype=torch.float16)
                task = worker.submit(self._write_segmented, shard, by_id, pending, batch.failed)
            account(task)
            if shard.delay > 0:
                account(worker.drain())
                shard.pause()
        account(worker.drain())

    def _write_segmented(self, shard: ShardRun[UnitShardWriter], by_id: dict[str, Utterance],
                         pending: PendingSegments | None, failed: list[EncodeFailure]) -> tuple[int, float, list[str]]:
        """Worker thread: collect one batch's segmentation and write its utterances; returns (written, audio s, bad lines)."""
        rows, non_finite = pending.result() if pending is not None else ([], [])
        entries = [(by_id[row.id], row.segments, row.embeddings, row.num_samples) for row in rows]
        return self._write_all(shard, entries, [f.line for f in failed + non_finite])

    def _write_given(self, shard: ShardRun[UnitShardWriter], items: list[tuple[Utterance, Encoded]],
                     failed: list[EncodeFailure]) -> tuple[int, float, list[str]]:
        """Worker thread: fit the given spans to the model's frames, average, write each utterance; returns
        (written, audio s, bad lines)."""
        assert self.given is not None
        bad = [f.line for f in failed]
        entries = []
        for utt, enc in items:
            states = enc.features
            try:
                seg = self.given.frames(utt, len(states))
            except ValueError as err:
                bad.append(f"{utt.id}\t{utt.audio}: given segments do not fit the model's frames ({err})")
                continue
            emb = segment_means(states, seg) if self.settings.embeddings else None  # (0, D) for no spans
            entries.append((utt, seg, emb, enc.num_samples))
        return self._write_all(shard, entries, bad)

    def _write_all(self, shard: ShardRun[UnitShardWriter],
                   entries: list[tuple[Utterance, np.ndarray, np.ndarray | None, int]],
                   bad: list[str]) -> tuple[int, float, list[str]]:
        """Write (utterance, segments, embeddings, samples at the model's rate) entries; returns
        (written, audio s, ``bad`` plus the lines of those that could not be written)."""
        written, seconds = 0, 0.0
        for utt, seg, emb, model_samples in entries:
            line = self._add(shard, utt, seg, emb, model_samples)
            if isinstance(line, str):
                bad.append(line)
            else:
                written += 1
                seconds += line
        return written, seconds, bad

    def _add(self, shard: ShardRun[UnitShardWriter], utt: Utterance, seg: np.ndarray, emb: np.ndarray | None,
             model_samples: int) -> float | str:
        """Shift (greedy segments only) and write one utterance: its audio seconds, or its bad line."""
        if self.shift_frames:  # boundaries moved after pooling: the embeddings are the model's own frames
            seg, keep = shift_segment_frames(seg, self.shift_frames, -(-model_samples // self.hop))
            emb = emb[keep] if emb is not None else None
        try:  # the file's own length and rate (model_samples is at the model's rate)
            num_samples, sample_rate = stored_length(utt)
        except AudioError as err:  # read once already while planning; only a file changed since fails here
            return f"{utt.id}\t{err}"
        shard.writer.add(id=utt.id, audio=utt.audio, num_samples=num_samples, sample_rate=sample_rate,
                         starts=seg[:, 0].tolist(), ends=seg[:, 1].tolist(), speaker=utt.speaker,
                         text=utt.text, embeddings=emb)
        return num_samples / sample_rate


def run_job(settings: TokenizeSettings, job: int, *, model: SpeechEncoder | None = None,
            utts: list[Utterance] | None = None, model_hash: str | None = None,
            progress: bool = True) -> ShardReport:
    """Run job ``job`` of ``settings.nj`` (loads the model and manifest, hashes the checkpoint, unless given).

    A complete output or an already finished shard of the same config is left alone
    (``report.skipped_complete``).
    """
    from speechunits.data.jsonl import load_manifest

    settings.check()
    limit_threads(settings.threads)
    model = load_model(settings.model) if model is None else model.eval()
    if utts is None:
        utts = load_manifest(settings.data, require_text=False)
    model_hash = model_hash or sha256_path(settings.model)
    runner = make_runner(settings, model, model_hash, utts, progress=progress)
    if runner.complete() or runner.shard_done(job):
        return ShardReport(job=job, nj=settings.nj, skipped_complete=True)
    return TokenizeJob(settings, runner, model, model_hash).run(job)


__all__ = [
    "DELAY_ENV",
    "TokenizeJob",
    "TokenizeSettings",
    "effective_config",
    "load_model",
    "make_runner",
    "producer",
    "run_job",
]
