"""``speechunits tokenize``: a corpus -> a syllable unit set (segments + float16 embeddings).

Sharded, resumable and merged by the job runner (:mod:`speechunits.jobs`, ``docs/jobs.md``):
``--job J`` runs shard J of ``--nj`` only (one task of a cluster array). Without ``--job``,
the unfinished shards run (``--nj 1``: in this process; ``--nj N > 1``: ``--cmd local``
starts N subprocesses ``python -m speechunits tokenize ... --job j``, each with
``cores // N`` torch threads, logging to ``UNIT_DIR/log/tokenize.J.log``), then the shards
are merged and validated, ``bad_utts.J.txt`` are gathered into ``bad_utts.txt``, every input
utterance is checked to be in exactly one of ``units.jsonl`` and ``bad_utts.txt``, and
``provenance.json`` is written last. After a cluster array, the same command without
``--job`` finds every shard finished and only merges. A complete output of the same config
(model hash, thresholds, data, nj, embeddings) is skipped; see :mod:`speechunits.tokenize.job`.

``--segments UNIT_DIR`` replaces the greedy segmentation by the spans of another unit set of
the same utterances (e.g. ``bootstrap-segments`` output): the embeddings are the model's means
over those spans, so ``cluster`` + ``quantize`` tokenize them the same way as Sylber's own
segments (:mod:`speechunits.tokenize.given`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from speechunits.errors import ConfigError, SpeechUnitsError
from speechunits.jobs import add_job_arguments, check_job_args, log_to_stderr
from speechunits.sylber.thresholds import add_threshold_arguments

VERB = "tokenize"
DEFAULT_BATCH_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="Sylber checkpoint: fairseq .pt, HF dir, torchaudio .pt or Lightning .ckpt")
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto spreads local jobs over GPUs)")
    parser.add_argument("--batch-seconds", type=float, default=None,
                        help="padded audio seconds per encoder batch (default 60, or no seconds cap when "
                             "--max-batch-frames is given; with both, the smaller budget wins)")
    parser.add_argument("--max-batch-frames", type=int, default=None,
                        help="padded encoder frames per batch (batch size x longest utterance's frames, 50 per "
                             "second for HuBERT base): the device-memory budget; e.g. 48000 = 64 x 15 s")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the encoder forward (falls back to eager with a warning if it fails)")
    parser.add_argument("--segment-on", choices=["auto", "host", "device"], default="auto",
                        help="where segmentation and segment means run: device (CUDA kernels; only segments and "
                             "float16 means leave the GPU), host (one parallel numba call per batch, overlapping "
                             "the next forward), auto (device when available, default)")
    add_threshold_arguments(parser)
    parser.add_argument("--num-workers", type=int, default=2, help="parallel audio decoding calls per job (default 2)")
    parser.add_argument("--prefetch", type=int, default=2, help="decoded batches kept ready ahead of the encoder (default 2)")
    parser.add_argument("--max-padding", type=float, default=0.1,
                        help="largest padding ratio of a batch, 1 - real/padded samples (default 0.1): a length "
                             "bucket closes before it would waste more of the forward pass on padding")
    parser.add_argument("--no-pin-memory", action="store_true",
                        help="do not pin decoded batches in page-locked host memory (pinning is used only on CUDA)")
    parser.add_argument("--no-embeddings", action="store_true", help="write segments only (no embeddings/)")
    parser.add_argument("--segments", type=Path, default=None, metavar="UNIT_DIR",
                        help="pool the model's features over this unit set's spans (e.g. bootstrap-segments output) "
                             "instead of greedy segmentation; the thresholds and the shift are then unused")
    add_job_arguments(parser)


def batch_seconds(given: float | None, max_batch_frames: int | None) -> float:
    """``--batch-seconds`` as given; unset: 60, or no cap (inf) when ``--max-batch-frames`` is the budget."""
    if given is not None:
        return float(given)
    return DEFAULT_BATCH_SECONDS if max_batch_frames is None else math.inf


def settings_from_args(args: argparse.Namespace) -> Any:
    from speechunits.encoders.checkpoints import segmentation_defaults
    from speechunits.sylber.thresholds import pick_shift, pick_thresholds
    from speechunits.tokenize.given import open_segment_set
    from speechunits.tokenize.job import TokenizeSettings

    check_job_args(args)
    if not Path(args.model).exists():
        raise ConfigError(Path(args.model), "model checkpoint does not exist")
    recorded = segmentation_defaults(args.model)
    args.norm_threshold, args.merge_threshold = pick_thresholds(recorded, args.norm_threshold, args.merge_threshold)
    args.shift = pick_shift(recorded, args.shift)
    settings = TokenizeSettings(
        model=Path(args.model).resolve(), data=Path(args.data).resolve(), out=Path(args.out).resolve(), nj=args.nj,
        norm_threshold=args.norm_threshold, merge_threshold=args.merge_threshold, reset_count=args.reset_count,
        shift=args.shift if args.segments is None else 0.0,
        embeddings=not args.no_embeddings, batch_seconds=batch_seconds(args.batch_seconds, args.max_batch_frames),
        max_batch_frames=args.max_batch_frames,
        num_workers=args.num_workers, prefetch=args.prefetch, compile=args.compile, segment_on=args.segment_on,
        pin_memory=not args.no_pin_memory, max_padding=args.max_padding, device=args.device, threads=args.threads,
        segments=open_segment_set(Path(args.segments).resolve()) if args.segments is not None else None,
    )
    settings.check()
    if settings.segment_on == "device" and settings.segments is None:  # fail before any output is made
        from speechunits.device import resolve_device
        from speechunits.sylber.segment_batch import resolve_segment_on

        try:
            resolve_segment_on("device", resolve_device(settings.device))
        except ValueError as err:
            raise ConfigError(None, f"--segment-on device: {err}") from err
    return settings


def run(args: argparse.Namespace) -> int:
    """Tokenize (the unfinished shards of) a corpus; without ``--job`` also merge and validate."""
    from speechunits.data.jsonl import load_manifest
    from speechunits.io_utils import sha256_path
    from speechunits.jobs import limit_threads
    from speechunits.tokenize.job import TokenizeJob, load_model, make_runner

    settings = settings_from_args(args)
    log_to_stderr()
    limit_threads(settings.threads)
    model = load_model(settings.model)
    utts = load_manifest(settings.data, require_text=False)
    model_hash = sha256_path(settings.model)
    runner = make_runner(settings, model, model_hash, utts)
    job = TokenizeJob(settings, runner, model, model_hash)
    return runner.run(job.run, args, add_arguments)


def main(argv: list[str] | None = None) -> int:
    """``python -m speechunits.tokenize.tokenize_cli``: errors as one line, exit 2."""
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
