"""``speechunits tokenize``: a corpus -> a syllable unit set (segments + float16 embeddings).

``--job J`` runs shard J of ``--nj`` only (one task of a cluster array). Without ``--job``,
the unfinished shards run as local jobs (``--nj 1``: in this process; ``--nj N > 1``: N
subprocesses ``python -m speechunits.tokenize.tokenize_cli ... --job j``, each with
``cores // N`` torch threads, logging to ``UNIT_DIR/log/tokenize.J.log``), then the shards
are merged and validated, ``bad_utts.J.txt`` are gathered into ``bad_utts.txt`` and
``provenance.json`` is written last. After a cluster array, the same command without
``--job`` finds every shard finished and only merges. A complete output of the same config
(model hash, thresholds, data, nj, embeddings) is skipped; see :mod:`speechunits.tokenize.job`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from speechunits.errors import ConfigError, SpeechUnitsError
from speechunits.io_utils import atomic_write_text
from speechunits.sylber.thresholds import add_threshold_arguments

VERB = "tokenize"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="Sylber checkpoint: fairseq .pt, HF dir, torchaudio .pt or Lightning .ckpt")
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    parser.add_argument("--nj", type=int, default=1, help="number of shards / local jobs (default 1)")
    parser.add_argument("--job", type=int, default=None, help="run only this shard (0-based), e.g. a cluster array task")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto spreads local jobs over GPUs)")
    parser.add_argument("--batch-seconds", type=float, default=60.0,
                        help="padded audio seconds per encoder batch (default 60)")
    add_threshold_arguments(parser)
    parser.add_argument("--num-workers", type=int, default=2, help="parallel audio decoding calls per job (default 2)")
    parser.add_argument("--no-embeddings", action="store_true", help="write segments only (no embeddings/)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per job (default: all cores for one job, cores // nj for local jobs)")


def settings_from_args(args: argparse.Namespace) -> Any:
    from speechunits.encoders.checkpoints import segmentation_defaults
    from speechunits.sylber.thresholds import pick_thresholds
    from speechunits.tokenize.job import TokenizeSettings

    if not Path(args.model).exists():
        raise ConfigError(Path(args.model), "model checkpoint does not exist")
    args.norm_threshold, args.merge_threshold = pick_thresholds(
        segmentation_defaults(args.model), args.norm_threshold, args.merge_threshold)
    settings = TokenizeSettings(
        model=Path(args.model).resolve(), data=Path(args.data).resolve(), out=Path(args.out).resolve(), nj=args.nj,
        norm_threshold=args.norm_threshold, merge_threshold=args.merge_threshold, reset_count=args.reset_count,
        embeddings=not args.no_embeddings, batch_seconds=args.batch_seconds, num_workers=args.num_workers,
        device=args.device, threads=args.threads,
    )
    settings.check()
    if args.job is not None and not 0 <= args.job < args.nj:
        raise ConfigError(None, f"need 0 <= --job < --nj, got --job {args.job} --nj {args.nj}")
    if not settings.model.exists():
        raise ConfigError(settings.model, "model checkpoint does not exist")
    return settings


def job_argv(settings: Any, job: int, threads: int, device: str) -> list[str]:
    """Command line of local job ``job``."""
    argv = [sys.executable, "-m", "speechunits.tokenize.tokenize_cli", "--model", str(settings.model), "--data",
            str(settings.data), "--out", str(settings.out), "--nj", str(settings.nj), "--job", str(job),
            "--device", device, "--batch-seconds", repr(settings.batch_seconds),
            "--norm-threshold", repr(settings.norm_threshold), "--merge-threshold", repr(settings.merge_threshold),
            "--num-workers", str(settings.num_workers), "--threads", str(threads)]
    if settings.reset_count:
        argv.append("--reset-count")
    if not settings.embeddings:
        argv.append("--no-embeddings")
    return argv


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_device(device: str, job: int) -> str:
    """``auto`` with several GPUs puts local job j on GPU j mod count; anything else is passed on."""
    if device == "auto":
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            return f"cuda:{job % torch.cuda.device_count()}"
    return device


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in [ln for ln in text.splitlines() if ln.strip()][-lines:])


def launch_local_jobs(settings: Any, jobs: list[int]) -> list[tuple[int, int, Path]]:
    """Run ``jobs`` as subprocesses at once and wait; returns (job, exit code, log) of failed ones."""
    log_dir = settings.out / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = settings.threads or max(1, available_cores() // settings.nj)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "NUMBA_NUM_THREADS": str(threads)}
    procs: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for job in jobs:
            log = log_dir / f"tokenize.{job}.log"
            with open(log, "wb") as f:
                f.write((" ".join(job_argv(settings, job, threads, job_device(settings.device, job))) + "\n").encode())
                f.flush()
                procs.append((job, subprocess.Popen(job_argv(settings, job, threads, job_device(settings.device, job)),
                                                    stdout=f, stderr=subprocess.STDOUT, env=env), log))
        print(f"{VERB}: running {len(jobs)} local job(s) with {threads} thread(s) each; logs in {log_dir}",
              file=sys.stderr)
        return [(job, code, log) for job, proc, log in procs if (code := proc.wait()) != 0]
    finally:
        for _job, proc, _log in procs:  # interrupted: stop the jobs (they resume on the next run)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def finish(settings: Any, effective: dict[str, Any]) -> int:
    """Merge and validate the shards, gather ``bad_utts.txt``, write provenance; returns #bad."""
    from speechunits.provenance import write_provenance
    from speechunits.tokenize.job import job_record_path, remove_files
    from speechunits.units import merge_shards

    out, nj = settings.out, settings.nj
    merge_shards(out, nj)
    lines = [ln for j in range(nj) for ln in (out / f"bad_utts.{j}.txt").read_text(encoding="utf-8").splitlines()]
    bad = "".join(ln + "\n" for ln in sorted(lines, key=lambda ln: ln.split("\t", 1)[0]))
    atomic_write_text(out / "bad_utts.txt", bad)
    remove_files([out / f"bad_utts.{j}.txt" for j in range(nj)] + [job_record_path(out, j) for j in range(nj)])
    write_provenance(out, effective, inputs=[settings.data, settings.model])
    return bad.count("\n")


def run(args: argparse.Namespace) -> int:
    """Tokenize (the unfinished shards of) a corpus; without ``--job`` also merge and validate."""
    from speechunits.data.jsonl import load_manifest
    from speechunits.device import resolve_device
    from speechunits.io_utils import sha256_path
    from speechunits.provenance import invalidate_provenance, is_complete
    from speechunits.tokenize.job import (
        effective_config,
        job_done,
        load_model,
        run_job,
    )

    settings = settings_from_args(args)
    logging_setup()
    if args.job is not None:
        report = run_job(settings, args.job)
        if report.skipped_complete:
            print(f"{VERB}: job {args.job} of {settings.nj} is complete for this config; nothing to do",
                  file=sys.stderr)
        return 0
    start = time.perf_counter()
    device = resolve_device(settings.device)
    model = load_model(settings.model, device)
    utts = load_manifest(settings.data, require_text=False)
    model_hash = sha256_path(settings.model)
    effective = effective_config(settings, model, model_hash, utts)
    if is_complete(settings.out, effective):
        print(f"{VERB}: {settings.out} is complete for this config; nothing to do", file=sys.stderr)
        return 0
    from speechunits.io_utils import sha256_json

    cfg_hash = sha256_json(effective)
    todo = [j for j in range(settings.nj) if not job_done(settings.out, j, cfg_hash)]
    if todo:
        settings.out.mkdir(parents=True, exist_ok=True)
        invalidate_provenance(settings.out)
    if settings.nj == 1 and todo:
        run_job(settings, 0, model=model, utts=utts, model_hash=model_hash)
    elif todo:
        del model
        failed = launch_local_jobs(settings, todo)
        if failed:
            for job, code, log in failed:
                print(f"{VERB}: job {job} failed (exit code {code}); see {log}\n{log_tail(log)}", file=sys.stderr)
            print(f"{VERB}: {len(failed)} of {len(todo)} job(s) failed; rerun the same command to resume",
                  file=sys.stderr)
            return 1
    num_bad = finish(settings, effective)
    print(f"{VERB}: wrote {settings.out} ({len(utts) - num_bad} utterances) in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    if num_bad:
        print(f"{VERB}: skipped {num_bad} utterance(s) with bad audio; see {settings.out / 'bad_utts.txt'}",
              file=sys.stderr)
    return 0


def logging_setup() -> None:
    """INFO messages of the tokenize job (summary lines, warnings) to stderr, once."""
    import logging

    logger = logging.getLogger("speechunits")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """``python -m speechunits.tokenize.tokenize_cli`` (how local jobs are started): errors as one line, exit 2."""
    parser = argparse.ArgumentParser(prog=f"speechunits {VERB}", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except SpeechUnitsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
