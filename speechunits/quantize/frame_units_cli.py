"""``speechunits frame-units``: k-means frame units (HuBERT-style) of a corpus, end to end.

Example::

    speechunits frame-units --model hubert_base_ls960.pt --layer 6 --data data/train \\
        --out exp/hubert6_km500 --k 500 --max-frames 1000000 --metric euclidean --device auto
    speechunits frame-units --model hubert_base_ls960.pt --layer 6 --data data/test \\
        --out exp/hubert6_km500_test --codebook exp/hubert6_km500/codebook.pt
    speechunits frame-units --features mfcc --data data/train --out exp/mfcc_km100 --k 100

The frames are either the output of transformer layer ``--layer`` of an encoder (1-based; the
model is loaded truncated to that many layers), or, with ``--features mfcc|logmel`` instead of
``--model``/``--layer``, per-utterance standardised signal features on the same 50 Hz grid
(:mod:`speechunits.features.frame_features`: 39-dim MFCC + deltas, HuBERT's iteration-1
targets, or 80 log-mels; window 400, hop 320, so frame ``i`` is frame ``i`` of a HuBERT-style
encoder). Either way they are computed in length-bucketed batches of at most
``--batch-seconds`` of padded audio; each row is trimmed to its own frame count (padding never
reaches the features).

* **Pass 1** (``--k`` only): a reservoir sample of at most ``--max-frames`` frames
  (Algorithm R over per-utterance blocks, deterministic for ``--seed``) is clustered with
  :func:`speechunits.quantize.kmeans.kmeans` and saved atomically as ``OUT/codebook.pt``
  (+ ``codebook.pt.json``). A codebook already there from the same model, layer, corpus and
  k-means settings is reused (a run killed during pass 2 does not redo pass 1).
  Pass 1 is one process over the whole corpus, before any shard runs.
* **Pass 2**, sharded by the job runner (:mod:`speechunits.jobs`, ``--nj``/``--job``/``--cmd``,
  with the unit-set output of :mod:`speechunits.units.shard_output`):
  each shard extracts its utterances' features again (never all held in memory), assigns
  every frame to its nearest centroid and merges consecutive repeats into one token
  (:func:`speechunits.quantize.frame_units.add_frame_units`), writing a resumable
  ``kind="frame"`` shard at ``sample_rate / hop`` (16000/320 for HuBERT: the frames count at
  the model's rate, while each record holds the audio file's own ``num_samples`` and
  ``sample_rate``, as the unit format says, from the manifest or the file's header) with
  ``vocab_size = k + 1`` (id ``k`` is the silence id, as ``quantize`` writes); the shards are then merged and validated. ``--job J`` needs the
  codebook already there (``--codebook``, or ``OUT/codebook.pt`` from pass 1 of this config).

Utterances with unreadable audio, too short for one frame, or with non-finite features are
left out and listed in ``OUT/bad_utts.txt`` (``<id>\\t<reason>``); utterances longer than a
whole batch run alone afterwards. ``provenance.json`` is written last: an output that is
complete for the same model (SHA-256) and layer (or feature parameters), corpus and codebook
settings is skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from speechunits.data.utterance import Utterance, manifest_fingerprint, stored_length
from speechunits.device import resolve_device
from speechunits.errors import AudioError, CheckpointError, ConfigError, ManifestError
from speechunits.io_utils import sha256_json, sha256_path
from speechunits.jobs import (
    BAD_NAME,
    JobRunner,
    add_job_arguments,
    check_job_args,
    limit_threads,
    log_to_stderr,
    write_bad_lines,
)
from speechunits.units.shard_output import UnitShardWriter, unit_set_runner
from speechunits.quantize.apply import codebook_vocabulary
from speechunits.quantize.codebook import Assigner, Codebook, load_codebook, save_codebook, sidecar_path
from speechunits.quantize.frame_units import FrameItem, add_frame_units, frame_units_producer
from speechunits.quantize.kmeans import METRICS, kmeans
from speechunits.quantize.sampling import reservoir_sample
from speechunits.encoders.batch import BatchEncoder
from speechunits.encoders.model import SpeechEncoder
from speechunits.features.frame_features import FEATURE_KINDS, FrameFeatureConfig, FrameFeatureExtractor

logger = logging.getLogger(__name__)

VERB = "frame-units"
CODEBOOK_NAME = "codebook.pt"
DEFAULT_MAX_FRAMES = 1_000_000


# ------------------------------------------------------------------ arguments
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="encoder checkpoint (HuBERT/Sylber, any layout "
                                                                 "load_encoder reads); with --layer")
    parser.add_argument("--layer", type=int, default=None, help="transformer layer whose output is quantized "
                                                                "(1-based, e.g. 6 for HuBERT base); with --model")
    parser.add_argument("--features", choices=FEATURE_KINDS, default=None,
                        help="instead of --model/--layer: quantize signal features on the encoder's 50 Hz grid "
                             "(mfcc: 13 MFCC + deltas + delta-deltas = 39 dims, HuBERT iteration 1; logmel: 80 "
                             "log-mels), standardised per utterance")
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    book = parser.add_mutually_exclusive_group(required=True)
    book.add_argument("--codebook", type=Path, default=None, help="existing codebook (.pt/.npy with .json sidecar)")
    book.add_argument("--k", type=int, default=None, help=f"train a k-means codebook of this size first "
                                                          f"(saved as OUT/{CODEBOOK_NAME})")
    km = parser.add_argument_group("k-means (with --k)")
    km.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                    help=f"at most this many frames are sampled for k-means (default {DEFAULT_MAX_FRAMES}; "
                         "memory: max_frames x dim x 4 bytes)")
    km.add_argument("--metric", choices=METRICS, default="euclidean", help="distance (default: euclidean, as HuBERT)")
    km.add_argument("--seed", type=int, default=0, help="seed of the frame sample and of k-means")
    km.add_argument("--iters", type=int, default=100, help="k-means iterations at most (default 100)")
    km.add_argument("--kmeans-batch-size", type=int, default=None,
                    help="mini-batch k-means with this many rows per step (default: full Lloyd iterations)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (model, k-means, assignment)")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    parser.add_argument("--num-workers", type=int, default=2, help="parallel audio decoding calls (default 2)")
    parser.add_argument("--force", action="store_true", help="redo even if the output is complete (pass 1 too)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_job_arguments(parser)


def check_args(args: argparse.Namespace) -> None:
    """ConfigError for option values no run can honour."""
    check_job_args(args)
    problems = []
    if args.features is not None:
        if args.model is not None or args.layer is not None:
            problems.append(f"--features {args.features} replaces --model/--layer: give either --features or "
                            "--model CKPT --layer L, not both")
    elif args.model is None and args.layer is None:
        problems.append("the frames to quantize are missing: give --model CKPT --layer L (encoder features) or "
                        "--features mfcc|logmel (signal features)")
    elif args.model is None:
        problems.append(f"--layer {args.layer} needs --model CKPT (or give --features mfcc|logmel instead)")
    elif args.layer is None:
        problems.append("--model needs --layer L (1-based transformer layer, e.g. 6 for HuBERT base)")
    if args.layer is not None and args.layer < 1:
        problems.append(f"--layer must be >= 1 (1-based transformer layer), got {args.layer}")
    if args.k is not None and args.k < 1:
        problems.append(f"--k must be >= 1, got {args.k}")
    if args.max_frames < 1:
        problems.append(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.iters < 1:
        problems.append(f"--iters must be >= 1, got {args.iters}")
    if args.kmeans_batch_size is not None and args.kmeans_batch_size < 1:
        problems.append(f"--kmeans-batch-size must be >= 1, got {args.kmeans_batch_size}")
    if not args.batch_seconds > 0:
        problems.append(f"--batch-seconds must be > 0, got {args.batch_seconds}")
    if args.num_workers < 1:
        problems.append(f"--num-workers must be >= 1, got {args.num_workers}")
    if problems:
        raise ConfigError(None, "; ".join(problems))


def kmeans_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options that determine a trained codebook (stored in its sidecar, compared on rerun).

    ``batch_seconds`` is one of them: Algorithm R depends on the order of the frame stream, and
    utterances longer than a batch are run after all the others, so the batch size changes
    which frames are sampled.
    """
    return {"k": args.k, "max_frames": args.max_frames, "metric": args.metric, "seed": args.seed,
            "iters": args.iters, "kmeans_batch_size": args.kmeans_batch_size, "batch_seconds": args.batch_seconds}


# ------------------------------------------------------------------ model
def load_layer_model(path: Path, layer: int, device: torch.device) -> SpeechEncoder:
    """The encoder truncated to ``layer`` transformer layers, in eval mode on ``device``."""
    from speechunits.encoders.checkpoints import load_encoder

    try:
        model = load_encoder(path, map_location="cpu", num_layers=layer)
    except CheckpointError as err:
        if "missing keys" in err.problem:
            raise CheckpointError(path, f"{err.problem} (does the checkpoint have --layer {layer} "
                                        "transformer layers?)") from None
        raise
    return model.to(device).eval()


FrameModule = SpeechEncoder | FrameFeatureExtractor
"""What makes the frames: an encoder (with a layer) or a signal feature extractor (``layer=None``)."""


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU when it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def frame_encoder(module: FrameModule, layer: int | None, batch_seconds: float) -> BatchEncoder:
    """The batched float32 (no autocast) encoder of ``module``'s frames on its own device.

    A :class:`~speechunits.features.frame_features.FrameFeatureExtractor` has the attributes
    :class:`BatchEncoder` reads from a model, so signal features share the one batched path
    (bucketing, trimming, accounting of bad and too-short utterances).
    """
    return BatchEncoder(module, batch_seconds=batch_seconds, layer=layer,  # type: ignore[arg-type]
                        device=module_device(module), autocast=False)


class LayerFeatures:
    """Layer ``layer`` features of a corpus, one utterance at a time: ``(utt, num_samples, (T, D) float32)``
    (``num_samples`` at the model's rate: what the frames were computed from).

    ``model`` may also be a :class:`~speechunits.features.frame_features.FrameFeatureExtractor`
    (then ``layer`` is None), or any module with an encoder's attributes whose ``forward``
    gives ``(B, T, D)`` frames. Each iteration is one full pass through
    :class:`~speechunits.encoders.batch.BatchEncoder` (float32, no autocast); :attr:`bad` then
    holds the ``id<TAB>reason`` lines of the utterances left out in that pass.
    """

    def __init__(self, model: FrameModule | torch.nn.Module, layer: int | None, utts: list[Utterance], *,
                 batch_seconds: float, num_workers: int = 2, desc: str = VERB, progress: bool = True) -> None:
        self.encoder = frame_encoder(model, layer, batch_seconds)  # type: ignore[arg-type]
        self.utts = utts
        self.num_workers = num_workers
        self.desc = desc
        self.progress = progress
        self.sample_rate = self.encoder.sample_rate
        self.bad: list[str] = []

    def __iter__(self) -> Iterator[tuple[Utterance, int, np.ndarray]]:
        self.bad = []
        by_id = {u.id: u for u in self.utts}
        with tqdm(total=len(self.utts), desc=self.desc, unit="utt", file=sys.stderr, disable=not self.progress,
                  leave=False) as bar:
            for batch in self.encoder.encode_utterances(self.utts, num_workers=self.num_workers):
                self.bad.extend(f.line for f in batch.failed)
                for enc in batch.encoded:
                    yield by_id[enc.id], enc.num_samples, enc.features
                bar.update(len(batch))


# ------------------------------------------------------------------ passes
def reusable_codebook(path: Path, source_hash: str, settings: dict[str, Any]) -> Codebook | None:
    """The codebook at ``path`` when it was trained on the same features with the same settings."""
    if not (path.is_file() and sidecar_path(path).is_file()):
        return None
    try:
        book = load_codebook(path)
    except CheckpointError:
        return None
    if book.meta.get("source_hash") == source_hash and book.meta.get("settings") == settings:
        return book
    return None


def fit_codebook(features: LayerFeatures, path: Path, settings: dict[str, Any], *, source_hash: str,
                 device: torch.device, data: Path, progress: bool = True) -> Codebook:
    """Pass 1: reservoir-sample frames, fit k-means, save the codebook at ``path`` (atomically)."""
    sample, total = reservoir_sample((rows for _utt, _n, rows in features), settings["max_frames"],
                                     seed=settings["seed"])
    if total == 0:
        raise AudioError(data, f"no usable frames: none of the {len(features.utts)} utterances could be used "
                               f"(reasons in {path.parent / BAD_NAME})")
    k = settings["k"]
    if k > sample.shape[0]:
        raise ConfigError(data, f"--k {k} is more than the {sample.shape[0]} frames available for k-means")
    result = kmeans(sample, k, metric=settings["metric"], iters=settings["iters"], seed=settings["seed"],
                    batch_size=settings["kmeans_batch_size"], device=device, progress=progress)
    extra = {"settings": settings, "num_vectors": int(sample.shape[0]), "total_vectors": int(total),
             "n_iter": result.n_iter, "converged": result.converged, "reseeded": result.reseeded,
             "device": str(device), "features": "frames"}
    return save_codebook(path, result.centroids, metric=settings["metric"], seed=settings["seed"],
                         inertia=result.inertia, source_hash=source_hash, extra=extra)


# ------------------------------------------------------------------ pass 2
def assign_shard(runner: JobRunner[UnitShardWriter], job: int, model: FrameModule, book: Codebook,
                 args: argparse.Namespace, producer: dict[str, Any], device: torch.device) -> None:
    """Pass 2 of shard ``job``: features of its unfinished utterances -> frame-unit runs in ``units.JOB.jsonl``."""
    model.to(device)
    nearest = Assigner(book, device=str(device))
    encoder = frame_encoder(model, args.layer, args.batch_seconds)
    with runner.open_shard(job, kind="frame", sample_rate=encoder.sample_rate, hop=int(model.config.hop_length),
                           producer=frame_units_producer(producer, book), source_manifest=str(args.data),
                           **codebook_vocabulary(book)) as shard:
        by_id = {u.id: u for u in shard.todo}
        for batch in encoder.encode_utterances(shard.todo, num_workers=args.num_workers):
            written, seconds, bad = 0, 0.0, [f.line for f in batch.failed]
            for enc in batch.encoded:
                utt = by_id[enc.id]
                try:  # the file's own length and rate (enc.num_samples is at the model's rate)
                    num_samples, rate = stored_length(utt)
                except AudioError as err:  # read once already while planning; only a file changed since fails here
                    bad.append(f"{utt.id}\t{err}")
                    continue
                add_frame_units(shard.writer, nearest, FrameItem(id=utt.id, audio=utt.audio, num_samples=num_samples,
                                                                 sample_rate=rate, features=enc.features,
                                                                 speaker=utt.speaker, text=utt.text))
                written += 1
                seconds += num_samples / rate
            shard.progress(written, bad, seconds)
            shard.pause()


# ------------------------------------------------------------------ driver
def run(args: argparse.Namespace) -> int:
    """Make (or reuse) the codebook (pass 1), then write the frame unit set in shards (pass 2)."""
    from speechunits.data.jsonl import load_manifest

    check_args(args)
    out: Path = args.out
    progress = not args.quiet
    if args.model is not None and not args.model.exists():
        raise CheckpointError(args.model, "checkpoint does not exist")
    utts = load_manifest(args.data, require_text=False)
    if not utts:
        raise ManifestError(args.data, "the corpus has no utterances")
    signal = FrameFeatureConfig(kind=args.features) if args.features is not None else None
    model_hash = sha256_path(args.model) if signal is None else None
    # what the frames are: part of the effective config and of the codebook's source hash
    source: dict[str, Any] = ({"model": model_hash, "layer": args.layer} if signal is None
                              else {"features": signal.to_dict()})
    book: Codebook | None = None
    if args.codebook is not None:
        book = load_codebook(args.codebook)
        book_cfg: dict[str, Any] = {"path": str(args.codebook.resolve()), "hash": book.hash}
    else:
        book_cfg = {"train": kmeans_settings(args)}
    frames_cfg: dict[str, Any] = ({"model": {"path": str(args.model.resolve()), "sha256": model_hash},
                                   "layer": args.layer} if signal is None else {"features": signal.to_dict()})
    effective = {
        "verb": VERB, **frames_cfg,
        "data": {"path": str(args.data.resolve()), "utterances": len(utts), "sha256": manifest_fingerprint(utts)},
        "codebook": book_cfg,
    }
    inputs = ([args.data] + ([args.model] if args.model is not None else [])
              + ([args.codebook] if args.codebook is not None else []))
    runner = unit_set_runner(VERB, utts=utts, out=out, nj=args.nj, effective=effective, inputs=inputs,
                             force=args.force, progress=progress)
    if runner.complete():
        print(f"{VERB}: {out} is complete for this config; nothing to do (--force to redo)", file=sys.stderr)
        return 0
    log_to_stderr()
    limit_threads(args.threads)
    device = resolve_device(args.device)
    model: FrameModule
    if signal is None:
        model = load_layer_model(args.model, args.layer, device)
        what = f"layer {args.layer} feature dim {model.embed_dim} of {args.model}"
        producer = {"features": "encoder-layer",
                    "model": {"path": str(args.model), "sha256": model_hash, "config": model.config.to_dict()},
                    "layer": args.layer}
    else:
        model = FrameFeatureExtractor(signal).to(device)
        what = f"--features {signal.kind} dim {model.embed_dim}"
        producer = {"features": signal.kind, "feature_config": signal.to_dict()}
    if book is None:
        book = pass_one(args, utts, model, source, effective, device, progress=progress)
    if book.dim != model.embed_dim:
        raise ConfigError(book.path, f"codebook dim {book.dim} != {what}")
    runner.shard_config = {"codebook": book.hash}
    model.cpu()  # a shard moves it back; a parent that only launches local jobs then holds no device memory
    return runner.run(lambda job: assign_shard(runner, job, model, book, args, producer, device), args, add_arguments,
                      empty_ok=False)


def pass_one(args: argparse.Namespace, utts: list[Utterance], model: FrameModule, source: dict[str, Any],
             effective: dict[str, Any], device: torch.device, *, progress: bool) -> Codebook:
    """The codebook of ``--k``: ``OUT/codebook.pt`` when it matches this config, else fitted now (not with --job).

    ``source`` says what the frames are (model hash and layer, or the feature parameters).
    """
    settings = kmeans_settings(args)
    source_hash = sha256_json({**source, "data": effective["data"]["sha256"]})
    path = args.out / CODEBOOK_NAME
    refit = args.force and args.job is None  # a --job of a forced run uses the codebook its parent just fitted
    book = None if refit else reusable_codebook(path, source_hash, settings)
    if book is not None:
        print(f"{VERB}: reusing {path} (k={book.k}, hash {book.hash[:12]})", file=sys.stderr)
        return book
    if args.job is not None:
        raise ConfigError(path, "--job runs pass 2 only, and pass 1 (k-means) has not made this codebook for these "
                                "settings yet: run the same command without --job first (or give --codebook)")
    args.out.mkdir(parents=True, exist_ok=True)
    features = LayerFeatures(model, args.layer, utts, batch_seconds=args.batch_seconds, num_workers=args.num_workers,
                             desc=f"{VERB} pass 1/2 (sample frames)", progress=progress)
    try:
        return fit_codebook(features, path, settings, source_hash=source_hash, device=device, data=args.data,
                            progress=progress)
    except AudioError:
        write_bad_lines(args.out / BAD_NAME, features.bad)
        raise


__all__ = ["BAD_NAME", "CODEBOOK_NAME", "FrameModule", "LayerFeatures", "add_arguments", "assign_shard", "fit_codebook",
           "frame_encoder", "load_layer_model", "module_device", "run"]
