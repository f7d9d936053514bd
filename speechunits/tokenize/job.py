"""One tokenization job: a shard of a corpus -> syllable segments (+ embeddings) in a unit set.

Per job (``job`` of ``nj``; utterances sorted by id and dealt round-robin):

1. **Resume.** A :class:`~speechunits.units.UnitSetWriter` with ``resume=True`` reads back what
   a killed run of the same config left in ``units.J.partial.jsonl``; those ids
   (``writer.done_ids``) are skipped. A partial shard written under a *different* config
   (``tokenize.J.json`` records the config hash) is deleted first, so changing a parameter
   redoes the work instead of mixing outputs.
2. **Audio + encoder.** The remaining utterances go through
   :func:`speechunits.data.pipeline.build_audio_pipeline`: parallel decoding, length-sorted
   buckets of at most ``batch_seconds`` padded audio, prefetch. An utterance longer than
   ``batch_seconds`` is not dropped: it runs alone afterwards.
3. **Encoder.** Each batch runs once through the (padding-invariant) model under
   ``torch.inference_mode()`` (bf16 autocast on CUDA); each row is trimmed to its exact
   frame length.
4. **Segmentation + writing** (greedy segmentation, segment means, ``writer.add``) run on a
   worker thread (:class:`~speechunits.tokenize.overlap.OverlapWorker`) while the main thread
   runs the next batch's forward pass. Embeddings are stored float16 by the writer.
5. **Finish.** ``bad_utts.J.txt`` (``id<TAB>reason`` of utterances with bad audio, or features
   the segmenter rejects), then ``units.J.jsonl`` (the writer's exit), then the job record
   ``tokenize.J.json`` with ``finished: true``.

Test hook: the environment variable ``SPEECHUNITS_TOKENIZE_BATCH_DELAY`` (seconds) sleeps after
each batch is written, so a test can kill a job mid-way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from speechunits.data.utterance import Utterance, manifest_fingerprint
from speechunits.device import resolve_device
from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_json, atomic_write_text, sha256_json, sha256_path
from speechunits.provenance import invalidate_provenance, is_complete
from speechunits.sylber.bootstrap_cli import shard_of
from speechunits.encoders.batch import BatchEncoder, EncodeFailure, Encoded
from speechunits.encoders.model import SpeechEncoder
from speechunits.sylber.segment import greedy_segment, segment_means
from speechunits.sylber.thresholds import DEFAULT_MERGE_THRESHOLD, DEFAULT_NORM_THRESHOLD
from speechunits.tokenize.overlap import OverlapWorker

logger = logging.getLogger(__name__)

VERB = "tokenize"
SEGMENTER = "sylber-greedy"
DELAY_ENV = "SPEECHUNITS_TOKENIZE_BATCH_DELAY"


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
    embeddings: bool = True
    batch_seconds: float = 60.0
    num_workers: int = 2
    device: str = "auto"
    threads: int | None = None

    def check(self) -> None:
        """ConfigError for values no job can honour."""
        problems = []
        if self.nj < 1:
            problems.append(f"--nj must be >= 1, got {self.nj}")
        if not self.batch_seconds > 0:
            problems.append(f"--batch-seconds must be > 0, got {self.batch_seconds}")
        if self.num_workers < 1:
            problems.append(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads must be >= 1, got {self.threads}")
        if not (self.norm_threshold >= 0 and -1 <= self.merge_threshold <= 1):
            problems.append(f"need --norm-threshold >= 0 and -1 <= --merge-threshold <= 1, got "
                            f"{self.norm_threshold}, {self.merge_threshold}")
        if problems:
            raise ConfigError(None, "; ".join(problems))


@dataclass
class JobReport:
    """What one job did in this run (``utterances`` excludes those finished by earlier runs)."""

    job: int
    nj: int
    utterances: int = 0
    already_done: int = 0
    bad: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    skipped_complete: bool = False
    bad_lines: list[str] = field(default_factory=list)

    @property
    def utt_per_second(self) -> float:
        return self.utterances / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Audio seconds per wall second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


# ------------------------------------------------------------------ config / provenance
def producer(settings: TokenizeSettings, model: SpeechEncoder, model_hash: str) -> dict[str, Any]:
    """The ``producer`` block of ``meta.json``."""
    return {
        "segmenter": SEGMENTER,
        "model": {"path": str(settings.model), "sha256": model_hash, "config": model.config.to_dict()},
        "norm_threshold": settings.norm_threshold,
        "merge_threshold": settings.merge_threshold,
        "reset_count": settings.reset_count,
    }


def effective_config(settings: TokenizeSettings, model: SpeechEncoder, model_hash: str,
                     utts: list[Utterance]) -> dict[str, Any]:
    """The config whose hash decides whether existing outputs are reusable.

    Batch size, workers, threads and device are left out: they do not change the result
    (beyond float rounding).
    """
    return {
        "verb": VERB,
        "producer": producer(settings, model, model_hash),
        "embeddings": settings.embeddings,
        "nj": settings.nj,
        "data": {"path": str(settings.data.resolve()), "utterances": len(utts), "sha256": manifest_fingerprint(utts)},
    }


def job_record_path(out: Path, job: int) -> Path:
    return out / f"tokenize.{job}.json"


def read_job_record(out: Path, job: int) -> dict[str, Any] | None:
    try:
        return dict(json.loads(job_record_path(out, job).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def job_done(out: Path, job: int, cfg_hash: str) -> bool:
    """True when job ``job`` finished under config ``cfg_hash`` and its shard files are in place."""
    rec = read_job_record(out, job)
    return (rec is not None and rec.get("config_hash") == cfg_hash and bool(rec.get("finished"))
            and (out / f"units.{job}.jsonl").is_file() and (out / f"bad_utts.{job}.txt").is_file())


def job_files(out: Path, job: int) -> list[Path]:
    """Every file job ``job`` may leave in ``out`` (partial and finished shard files)."""
    emb = out / "embeddings"
    return [out / f"units.{job}.partial.jsonl", out / f"meta.{job}.partial.json", emb / f"shard.{job}.partial.raw",
            out / f"units.{job}.jsonl", out / f"meta.{job}.json", emb / f"index.{job}.json",
            out / f"bad_utts.{job}.txt", job_record_path(out, job)]


def remove_files(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ------------------------------------------------------------------ model
def load_model(path: Path, device: torch.device) -> SpeechEncoder:
    from speechunits.encoders.checkpoints import load_encoder

    return load_encoder(path, map_location="cpu").to(device).eval()


# ------------------------------------------------------------------ the job
class TokenizeJob:
    """One job's loop (see the module docstring). Use :func:`run_job` unless you hold a model."""

    def __init__(self, settings: TokenizeSettings, job: int, model: SpeechEncoder, model_hash: str,
                 utts: list[Utterance], *, progress: bool = True) -> None:
        if not 0 <= job < settings.nj:
            raise ConfigError(None, f"need 0 <= --job < --nj, got --job {job} --nj {settings.nj}")
        self.settings = settings
        self.job = job
        self.model = model
        self.device = next(model.parameters()).device
        self.model_hash = model_hash
        self.utts = utts
        self.progress = progress
        self.sample_rate = int(model.config.sample_rate)
        self.effective = effective_config(settings, model, model_hash, utts)
        self.cfg_hash = sha256_json(self.effective)
        self.delay = float(os.environ.get(DELAY_ENV, "0") or 0)

    # ---------------------------------------------------------------- driver
    def run(self) -> JobReport:
        s, out, job = self.settings, self.settings.out, self.job
        report = JobReport(job=job, nj=s.nj)
        if is_complete(out, self.effective) or job_done(out, job, self.cfg_hash):
            report.skipped_complete = True
            return report
        out.mkdir(parents=True, exist_ok=True)
        invalidate_provenance(out)
        rec = read_job_record(out, job)
        if rec is not None and rec.get("config_hash") != self.cfg_hash:
            logger.warning("job %d: removing a shard made with a different config", job)
            remove_files(job_files(out, job))
        atomic_write_json(job_record_path(out, job), {"config_hash": self.cfg_hash, "finished": False})
        from speechunits.units import UnitSetWriter

        writer = UnitSetWriter(
            out, kind="syllable", sample_rate=self.sample_rate, hop=int(self.model.config.hop_length), job=job,
            nj=s.nj, producer=producer(s, self.model, self.model_hash), source_manifest=str(s.data),
            embedding_dim=self.model.embed_dim if s.embeddings else None, resume=True,
        )
        shard = shard_of(self.utts, job, s.nj)
        remaining = [u for u in shard if u.id not in writer.done_ids]
        report.already_done = len(shard) - len(remaining)
        start = time.perf_counter()
        bar = tqdm(total=len(remaining), desc=f"{VERB} job {job}/{s.nj}", unit="utt", file=sys.stderr,
                   disable=not self.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        with writer, OverlapWorker(max_pending=2, name=f"tokenize{job}") as worker:
            self._writer = writer
            if remaining:
                self._run_batches(remaining, worker, report, bar, start)
            report.bad = len(report.bad_lines)
            atomic_write_text(out / f"bad_utts.{job}.txt", "".join(line + "\n" for line in report.bad_lines))
        report.wall_seconds = time.perf_counter() - start
        bar.close()
        atomic_write_json(job_record_path(out, job), {
            "config_hash": self.cfg_hash, "finished": True, "utterances": len(shard), "bad": report.bad,
        })
        logger.info("job %d/%d: %d utterances (%d done before), %d bad, %.1f s audio in %.1f s: %.1f utt/s, "
                    "%.1fx real time", job, s.nj, report.utterances, report.already_done, report.bad,
                    report.audio_seconds, report.wall_seconds, report.utt_per_second, report.real_time_factor)
        return report

    def _run_batches(self, utts: list[Utterance], worker: OverlapWorker[tuple[int, float, list[str]]],
                     report: JobReport, bar: tqdm, start: float) -> None:
        """Encode ``utts`` batch by batch; each batch is segmented and written on the worker thread."""
        by_id = {u.id: u for u in utts}
        encoder = BatchEncoder(self.model, batch_seconds=self.settings.batch_seconds, device=self.device)

        def account(results: Any) -> None:
            for n, seconds, bad in results:
                report.utterances += n
                report.audio_seconds += seconds
                report.bad_lines.extend(bad)
                bar.update(n + len(bad))
            wall = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{report.utterances / wall:.2f} utt/s, RTF {report.audio_seconds / wall:.1f}x",
                                refresh=False)

        for batch in encoder.encode_utterances(utts, num_workers=self.settings.num_workers, prefetch=2):
            account(worker.submit(self._write_batch, [(by_id[e.id], e) for e in batch.encoded], batch.failed))
            if self.delay > 0:
                account(worker.drain())
                time.sleep(self.delay)
        account(worker.drain())

    def _write_batch(self, items: list[tuple[Utterance, Encoded]],
                     failed: list[EncodeFailure]) -> tuple[int, float, list[str]]:
        """Worker thread: segment, average, write each utterance; returns (written, audio s, bad lines)."""
        s = self.settings
        written, seconds, bad = 0, 0.0, [f.line for f in failed]
        for utt, enc in items:
            states = enc.features
            try:
                seg = greedy_segment(states, s.norm_threshold, s.merge_threshold, reset_count=s.reset_count)
            except ValueError as err:
                bad.append(f"{utt.id}\t{utt.audio}: model features rejected by the segmenter ({err})")
                continue
            emb = None
            if s.embeddings:
                emb = segment_means(states, seg) if len(seg) else np.zeros((0, states.shape[1]), np.float32)
            self._writer.add(id=utt.id, audio=utt.audio, num_samples=enc.num_samples, sample_rate=self.sample_rate,
                             starts=seg[:, 0].tolist(), ends=seg[:, 1].tolist(), speaker=utt.speaker,
                             text=utt.text, embeddings=emb)
            written += 1
            seconds += enc.num_samples / self.sample_rate
        return written, seconds, bad


def run_job(settings: TokenizeSettings, job: int, *, model: SpeechEncoder | None = None,
            utts: list[Utterance] | None = None, model_hash: str | None = None,
            progress: bool = True) -> JobReport:
    """Run job ``job`` of ``settings.nj`` (loads the model and manifest, hashes the checkpoint, unless given)."""
    from speechunits.data.jsonl import load_manifest

    settings.check()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    if model is None:
        model = load_model(settings.model, device)
    else:
        model = model.to(device).eval()
    if utts is None:
        utts = load_manifest(settings.data, require_text=False)
    model_hash = model_hash or sha256_path(settings.model)
    return TokenizeJob(settings, job, model, model_hash, utts, progress=progress).run()


__all__ = [
    "DELAY_ENV",
    "JobReport",
    "TokenizeJob",
    "TokenizeSettings",
    "effective_config",
    "job_done",
    "job_files",
    "producer",
    "run_job",
]
