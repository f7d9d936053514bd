"""``speechunits cluster``: train a k-means codebook on the token embeddings of a unit set.

Example::

    speechunits cluster --units exp/units/train --k 10000 --out exp/km/km10000.pt \\
        --metric cosine --max-samples 2000000 --iters 50 --device auto

Writes ``CODEBOOK`` (``.pt`` or ``.npy``) and its ``.json`` sidecar (k, metric, dim, seed,
inertia, centroid hash, hash of the source embeddings, sampling settings). Skips the work
when the codebook exists and was made from the same embeddings with the same settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from speechunits.device import resolve_device
from speechunits.errors import CheckpointError
from speechunits.quantize.codebook import load_codebook, save_codebook, sidecar_path
from speechunits.quantize.kmeans import METRICS, PRECISIONS, kmeans
from speechunits.quantize.sampling import METHODS, embeddings_hash, sample_embeddings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, type=Path, help="unit set directory with embeddings/")
    parser.add_argument("--k", required=True, type=int, help="number of clusters (codebook size)")
    parser.add_argument("--out", required=True, type=Path, help="codebook file to write (.pt or .npy; sidecar .json beside it)")
    parser.add_argument("--metric", choices=METRICS, default="cosine", help="distance (default: cosine)")
    parser.add_argument("--max-samples", type=int, default=1_000_000,
                        help="at most this many embeddings are sampled for training (default 1e6; 0 = all)")
    parser.add_argument("--sampling", choices=METHODS, default="uniform", help="sampler for --max-samples")
    parser.add_argument("--iters", type=int, default=100, help="Lloyd (or mini-batch) iterations at most")
    parser.add_argument("--tol", type=float, default=1e-4, help="convergence tolerance (relative inertia decrease)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mini-batch k-means with this batch size (default: full Lloyd iterations)")
    parser.add_argument("--init-sample", type=int, default=None,
                        help="rows used by k-means++ seeding (default max(20k, 10000))")
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per distance block (memory bound)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--matmul-precision", choices=["auto", *PRECISIONS], default="auto",
                        help="precision of the distance matmuls (auto: tf32 on CUDA, fp32 on the CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="retrain even if an identical codebook exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> dict:
    """The options that determine the codebook (stored in the sidecar, compared on rerun)."""
    return {"k": args.k, "metric": args.metric, "max_samples": args.max_samples or None, "sampling": args.sampling,
            "iters": args.iters, "tol": args.tol, "batch_size": args.batch_size, "init_sample": args.init_sample,
            "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    source = embeddings_hash(args.units)
    wanted = settings(args)
    if not args.force and args.out.is_file() and sidecar_path(args.out).is_file():
        try:
            old = load_codebook(args.out)
        except CheckpointError:
            old = None
        if old is not None and old.meta.get("source_hash") == source and old.meta.get("settings") == wanted:
            print(f"cluster: {args.out} is up to date (k={old.k}, hash {old.hash[:12]}); use --force to redo",
                  file=sys.stderr)
            return 0
    device = resolve_device(args.device)
    t0 = time.time()
    sample = sample_embeddings(args.units, args.max_samples or None, seed=args.seed, method=args.sampling,
                               progress=not args.quiet)
    t1 = time.time()
    result = kmeans(sample.vectors, args.k, metric=args.metric, iters=args.iters, tol=args.tol, seed=args.seed,
                    batch_size=args.batch_size, device=device, init_sample=args.init_sample,
                    chunk_rows=args.chunk_rows, progress=not args.quiet, matmul_precision=args.matmul_precision)
    t2 = time.time()
    extra = {
        "settings": wanted, "source_units": str(args.units), "num_vectors": int(sample.vectors.shape[0]),
        "total_vectors": sample.total, "n_iter": result.n_iter, "converged": result.converged,
        "reseeded": result.reseeded, "device": str(device), "matmul_precision": result.matmul_precision,
    }
    timings = {"seconds": {"sampling": round(t1 - t0, 3), "kmeans": round(t2 - t1, 3)}}
    book = save_codebook(args.out, result.centroids, metric=args.metric, seed=args.seed, inertia=result.inertia,
                         source_hash=source, extra=extra, run_info=timings)
    print(json.dumps({"codebook": str(args.out), "hash": book.hash, **result.summary(),
                      "num_vectors": extra["num_vectors"], **timings}), file=sys.stderr)
    return 0
