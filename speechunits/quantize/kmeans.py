"""K-means in torch: k-means++ init on a sample, full or mini-batch Lloyd iterations.

Distances are computed in row chunks so that no ``N x K`` matrix is ever materialised:
peak extra memory is about ``chunk_rows * K`` floats (see :func:`auto_chunk_rows`). Works on
CPU or CUDA (``device="auto"`` picks CUDA when present). The device-side pieces (distance blocks
per matmul precision, assignment, per-cluster sums) live in :mod:`speechunits.quantize.kmeans_ops`
and are re-exported here; this module is the algorithm (seeding, Lloyd, mini-batch). Two metrics:

* ``euclidean``: squared Euclidean distance, centroids are means.
* ``cosine``: spherical k-means. Points and centroids are L2-normalised, the distance is
  ``1 - cos`` and centroids are re-normalised means, so clustering depends on direction only.

Why the code looks like this (issue 15). On an H200, 1M x 768 with k = 10,000 took 15 s for
10 Lloyd iterations (9 s with TF32) although the distance matmuls alone need about 0.05 s per
iteration. The time went to:

* k-means++ seeding, one centre at a time, with three host syncs per centre (the total weight,
  the drawn index, a "taken" check): 10,000 sequential rounds of ~15 small kernels plus syncs.
  Now every draw happens on the device (Gumbel-top-m sampling from a seeded device generator:
  weighted sampling without replacement, no host sync), and by default
  ``ceil(k / 512)`` centres are drawn per round, so seeding is at most 512 passes over the
  sample whatever ``k`` (``init_batch=1`` is exact sequential k-means++).
* centroid sums as a dense one-hot matmul on CUDA: a ``(rows, K)`` one-hot per chunk and a
  ``K x rows x D`` matmul, i.e. as many flops as the distances themselves, plus a float64
  ``K x D`` read-modify-write per 1,677-row chunk. Now the labels are sorted (stable), rows
  gathered in that order and summed per cluster with ``torch.segment_reduce`` over the sorted
  offsets (CUDA: one thread per (cluster, column) adding its rows in order; no atomics, so
  deterministic), float32 within a chunk of up to ``SUM_BLOCK_ELEMENTS`` floats, float64 across
  chunks. On the CPU ``index_add_`` (sequential, deterministic, faster there) stays the default.
  Caveat: a cluster's rows are added by one thread per column, so the largest cluster bounds the
  time of the sum (a few thousand rows: well under a millisecond).
* distances as ``x^2 - 2 x.c + c^2`` in four elementwise passes per block: now one fused
  ``addmm(|c|^2, x, -2 c^T)`` and an ``argmin`` (the row constant ``|x|^2`` cannot change it); the
  winner's distance is then recomputed exactly (``|x - c|^2``, ``D`` flops per row instead of
  ``K D``), so the inertia is exact float32 whatever the matmul precision.
* host syncs: boolean-mask indexing (``new[nonempty] = ...``, ``rate[hit]``) and per-chunk
  ``float()`` in the data-scale pass each forced a sync. Now full Lloyd syncs once per iteration
  (inertia, changed labels and empty clusters fetched together) and mini-batch once per step.

``matmul_precision`` (``"fp32"``, ``"tf32"``, ``"bf16"``; ``"auto"`` = fp32 on the CPU, tf32 on
CUDA) only affects the distance matmuls, i.e. which centroid wins; sums, means and inertia stay
float32/float64. TF32 and bf16 round the matmul operands to 10 and 7 stored mantissa bits with
float32 accumulation and output; on the CPU, which has no such units, both are emulated by
rounding the operands and multiplying in float32 (products of such operands are exact), so the
CPU tests check the same numerics the GPU uses (slower than fp32 there). For those two the
euclidean data and centroids are centred on the data mean before the matmul (same argmin; the
rounding error scales with ``|x - mean| |c - mean|`` instead of ``|x| |c|``). The issue's target,
0.1 s per iteration at 1M x 768 x 10,000 (15.4 TFLOP of products), is out of reach of fp32 on an
H200 (about 67 TFLOP/s peak: 0.23 s at best) and needs tf32 or bf16 (about 0.03-0.05 s of
matmuls), hence ``auto`` = tf32 on CUDA; tests/test_kmeans.py states the centroid tolerances.

Results are deterministic for a seed on a given device: the sample and mini-batch draws come from
a seeded CPU ``torch.Generator``, the seeding draws from a device generator seeded from it, and
every reduction is deterministic. The seeding change (issue 15) changed which centres a seed picks
compared to earlier versions of this module; results for a seed differ from codebooks trained
before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from speechunits.device import resolve_device
from speechunits.errors import ConfigError
from speechunits.quantize.kmeans_ops import (  # noqa: F401 - re-exported: the public k-means API
    DEFAULT_BLOCK_ELEMENTS, METRICS, PRECISIONS, SUM_BLOCK_ELEMENTS, SUM_CHUNK_ROWS, SUM_METHODS, assign_chunked,
    auto_chunk_rows, block_scores, centroid_operands, check_metric, cluster_sums, data_mean, finish_centroids,
    matmul_precision_scope, operand, prepare, resolve_precision, resolve_sum_method, round_tf32, update_centroids)

# Default k-means++ rounds: ceil(k / INIT_ROUNDS) centres are drawn per round.
INIT_ROUNDS = 512


@dataclass
class KMeansResult:
    """Output of :func:`kmeans`: float32 CPU centroids ``(K, D)`` plus diagnostics."""

    centroids: torch.Tensor
    inertia: float
    n_iter: int
    converged: bool
    metric: str
    seed: int
    history: list[float] = field(default_factory=list)
    reseeded: int = 0
    matmul_precision: str = "fp32"

    def summary(self) -> dict[str, Any]:
        """JSON-ready diagnostics (no centroids)."""
        k, dim = self.centroids.shape
        return {"k": k, "dim": dim, "metric": self.metric, "seed": self.seed, "inertia": self.inertia,
                "n_iter": self.n_iter, "converged": self.converged, "reseeded": self.reseeded,
                "matmul_precision": self.matmul_precision}


def init_batch_size(k: int) -> int:
    """Default centres per k-means++ round: exact (1) up to ``INIT_ROUNDS`` centres, then ``ceil(k / INIT_ROUNDS)``."""
    return max(1, math.ceil(k / INIT_ROUNDS))


def as_tensor(x: Any) -> torch.Tensor:
    """A tensor view of ``x`` (numpy arrays shared; read-only ones, e.g. memory maps, copied to float32)."""
    if isinstance(x, torch.Tensor):
        return x
    arr = np.ascontiguousarray(x)
    if not arr.flags.writeable:
        arr = np.array(arr, dtype=np.float32)
    return torch.from_numpy(arr)


def to_device_prepared(x: torch.Tensor, metric: str, device: torch.device, chunk_rows: int) -> torch.Tensor:
    """``prepare(x)`` on ``device``, converted chunk by chunk (no second full-size temporary).

    A float32 euclidean input already on ``device`` is used as is (it is never modified).
    """
    if metric == "euclidean" and x.dtype == torch.float32 and x.device == device:
        return x
    out = torch.empty(x.shape[0], x.shape[1], dtype=torch.float32, device=device)
    for lo in range(0, x.shape[0], chunk_rows):
        out[lo:lo + chunk_rows] = prepare(x[lo:lo + chunk_rows].to(device), metric)
    return out


# ------------------------------------------------------------------ seeding
def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from one draw of ``generator`` (deterministic per seed and device)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _weighted_draw(weights: torch.Tensor, taken: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
    """``m`` distinct untaken indices drawn with probability proportional to ``weights``, on the device.

    Gumbel-top-m: ``log w + Gumbel`` noise, the ``m`` largest keys are a weighted sample without
    replacement. Zero-weight rows rank below every positive one (uniform among themselves), taken
    rows never win. No host sync.
    """
    u = torch.rand(weights.shape[0], generator=gen, device=weights.device, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp_(min=1e-300)))
    w = weights.double()
    logw = torch.where(w > 0, w.clamp_min(1e-300).log(), torch.full_like(w, -1e4))
    keys = (logw + gumbel).masked_fill_(taken, -math.inf)
    if m == 1:
        return keys.argmax().reshape(1)
    return torch.topk(keys, m).indices


@torch.no_grad()
def kmeans_plusplus(
    x: torch.Tensor, k: int, metric: str, generator: torch.Generator, *, sample_size: int | None = None,
    batch: int | None = None, precision: str = "fp32", chunk_rows: int | None = None,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """k-means++ seeding on (a uniform sample of) prepared rows ``x``; returns ``(k, D)`` centroids.

    D^2 sampling: centres are drawn with probability proportional to their distance (squared
    Euclidean, or ``1 - cos``) to the nearest centre so far, ``batch`` at a time without
    replacement (default :func:`init_batch_size`; ``1`` = exact sequential k-means++). When every
    remaining distance is zero (fewer distinct points than ``k``), centres are drawn uniformly
    among unchosen rows. The draws happen on the device from a generator seeded by ``generator``:
    no host sync per centre; deterministic for a seed on a given device. ``precision`` and
    ``center`` are as in :func:`assign_chunked`.
    """
    n = x.shape[0]
    source, rows_of = x, None
    if sample_size is not None and sample_size < n:
        rows_of = torch.randperm(n, generator=generator)[:sample_size].sort().values.to(x.device)
        x = x[rows_of]
        n = sample_size
    precision = resolve_precision(precision, x.device)
    step = init_batch_size(k) if batch is None else max(1, int(batch))
    dgen = _device_generator(generator, x.device)
    # the centred, rounded matmul operand of the sample, built once (a copy unless fp32 and nothing to centre)
    shift = center if metric == "euclidean" else None
    x_op, x_sq = x, None
    if metric == "euclidean" or precision != "fp32":
        parts, sq = [], []
        for xb in x.split(auto_chunk_rows(x.shape[1])):
            xs = xb if shift is None else xb - shift
            parts.append(operand(xs, precision))
            if metric == "euclidean":
                sq.append((xs * xs).sum(1))
        x_op = x if (shift is None and precision == "fp32") else torch.cat(parts)
        x_sq = torch.cat(sq) if sq else None
        del parts
    mind = torch.ones(n, dtype=torch.float32, device=x.device)  # equal weights: a uniform first draw
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    chosen = torch.empty(k, dtype=torch.int64, device=x.device)
    pos = 0
    with matmul_precision_scope(precision, x.device):
        while pos < k:
            m = 1 if pos == 0 else min(step, k - pos)
            idx = _weighted_draw(mind, taken, m, dgen)
            chosen[pos:pos + m] = idx
            taken[idx] = True
            if pos == 0:
                mind.fill_(math.inf)
            cx = x[idx] if shift is None else x[idx] - shift
            c_op, c_sq = centroid_operands(cx, metric, precision)
            rows = chunk_rows or auto_chunk_rows(m)
            for lo in range(0, n, rows):
                s = block_scores(x_op[lo:lo + rows], c_op, c_sq, metric, precision).amin(1)
                d = s + x_sq[lo:lo + rows] if x_sq is not None else 1.0 + s
                torch.minimum(mind[lo:lo + rows], d.clamp_min_(0.0), out=mind[lo:lo + rows])
            pos += m
    return source[chosen if rows_of is None else rows_of[chosen]].clone()


def _reseed_empty(
    centroids: torch.Tensor, counts: torch.Tensor, x: torch.Tensor, dists: torch.Tensor, metric: str,
) -> int:
    """Move each empty centroid onto one of the points farthest from its centre (in place)."""
    empty = (counts == 0).nonzero().flatten()
    if len(empty) == 0:
        return 0
    far = torch.topk(dists, min(len(empty), x.shape[0])).indices
    empty = empty[:len(far)]
    centroids[empty] = x[far]
    dists[far] = 0.0
    if metric == "cosine":
        centroids[empty] = torch.nn.functional.normalize(centroids[empty], dim=1)
    return len(empty)


def _validate(x: torch.Tensor, k: int, metric: str, iters: int, tol: float, batch_size: int | None) -> None:
    check_metric(metric)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ConfigError(None, f"k-means input must be 2-D (N, D) with D > 0, found shape {tuple(x.shape)}")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(None, f"k must be a positive integer, found {k!r}")
    if k > x.shape[0]:
        raise ConfigError(None, f"k={k} is larger than the number of vectors N={x.shape[0]}")
    if iters < 1:
        raise ConfigError(None, f"iters must be >= 1, found {iters}")
    if tol < 0:
        raise ConfigError(None, f"tol must be >= 0, found {tol}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(None, f"batch_size must be >= 1, found {batch_size}")


@torch.no_grad()
def kmeans(
    x: Any,
    k: int,
    *,
    metric: str = "euclidean",
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    init_sample: int | None = None,
    init: Any = None,
    chunk_rows: int | None = None,
    progress: bool = True,
    matmul_precision: str = "auto",
    init_batch: int | None = None,
    centroid_sums: str = "auto",
) -> KMeansResult:
    """Cluster the rows of ``x`` (``(N, D)`` numpy array or tensor, any float dtype) into ``k`` clusters.

    - ``batch_size=None`` (or ``>= N``): full Lloyd iterations; stops when labels stop changing
      or the relative inertia decrease is ``< tol``.
    - ``batch_size=B < N``: mini-batch k-means (Sculley 2010): each iteration draws B rows,
      moves their centres with per-centre rates ``1/count``; stops when the mean squared
      centre shift is ``< tol * tol`` (relative to the data scale). Inertia is then computed in
      one final chunked pass over all rows.
    - ``init_sample``: rows used for k-means++ (default ``min(N, max(20 k, 10000))``).
    - ``init``: ``(k, D)`` initial centroids instead of k-means++ (normalised for cosine).
    - ``init_batch``: centres drawn per k-means++ round (default ``ceil(k / 512)``; 1 = exact).
    - ``chunk_rows``: rows per distance block (default: about 16M floats per block).
    - ``matmul_precision``: ``fp32``, ``tf32`` or ``bf16`` distance matmuls (``auto``: tf32 on
      CUDA, fp32 elsewhere). Only the choice of nearest centroid is affected.
    - ``centroid_sums``: ``sorted`` (segment sums, any device) or ``index_add`` (CPU only);
      ``auto`` picks index_add on the CPU.

    Empty clusters (full Lloyd) are moved onto the points farthest from their centres;
    in mini-batch mode, centres that received no point for a whole pass over ``N`` rows are.
    Raises ConfigError for ``k > N`` and other bad arguments.
    """
    xt = as_tensor(x)
    _validate(xt, k, metric, iters, tol, batch_size)
    dev = resolve_device(device)
    precision = resolve_precision(matmul_precision, dev)
    sums = resolve_sum_method(centroid_sums, dev)
    if init_batch is not None and (not isinstance(init_batch, int) or init_batch < 1):
        raise ConfigError(None, f"init_batch must be a positive integer, found {init_batch!r}")
    n = xt.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    rows = chunk_rows or auto_chunk_rows(k)
    xd = to_device_prepared(xt, metric, dev, rows)
    # centring only pays for the rounded tf32/bf16 operands; fp32 keeps the uncentred (previous) numerics
    center = data_mean(xd, auto_chunk_rows(xd.shape[1])) if metric == "euclidean" and precision != "fp32" else None
    if init is not None:
        centroids = prepare(as_tensor(init), metric).to(dev)
        if tuple(centroids.shape) != (k, xd.shape[1]):
            raise ConfigError(None, f"init must have shape ({k}, {xd.shape[1]}), found {tuple(centroids.shape)}")
    else:
        sample = init_sample if init_sample is not None else min(n, max(20 * k, 10000))
        centroids = kmeans_plusplus(xd, k, metric, gen, sample_size=min(max(sample, k), n), batch=init_batch,
                                    precision=precision, center=center)
    opts = LloydOptions(metric, rows, precision, sums, center)
    if batch_size is None or batch_size >= n:
        res = _lloyd(xd, centroids, opts, iters, tol, seed, progress)
    else:
        res = _minibatch(xd, centroids, opts, iters, tol, batch_size, seed, gen, progress)
    res.matmul_precision = precision
    return res


@dataclass(frozen=True)
class LloydOptions:
    """How one Lloyd step computes: metric, rows per distance block, matmul precision, sum method, and the
    point subtracted before the distance matmuls (euclidean: the data mean; see :func:`assign_chunked`)."""

    metric: str
    rows: int
    precision: str
    sums: str
    center: torch.Tensor | None = None

    def assign(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`assign_chunked` of prepared rows with these options."""
        return assign_chunked(x, c, self.metric, self.rows, prepared=True, precision=self.precision,
                              center=self.center)


def lloyd_step(x: torch.Tensor, c: torch.Tensor, labels: torch.Tensor, dists: torch.Tensor, opts: LloydOptions,
               n_empty: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One Lloyd iteration on prepared rows: update, reseed empty clusters, reassign.

    ``dists``/``n_empty`` come with ``labels`` (the previous assignment; ``n_empty`` = clusters it
    left empty). Returns ``(centroids, labels, dists, counts of the new labels, reseeded)``; syncs
    with the host only when clusters are empty.
    """
    c, counts = update_centroids(x, labels, c, opts.metric, sums=opts.sums)
    reseeded = _reseed_empty(c, counts, x, dists, opts.metric) if n_empty else 0
    labels, dists = opts.assign(x, c)
    return c, labels, dists, torch.bincount(labels, minlength=c.shape[0]), reseeded


def _lloyd(x: torch.Tensor, c: torch.Tensor, opts: LloydOptions, iters: int, tol: float, seed: int,
           progress: bool) -> KMeansResult:
    k = c.shape[0]
    history: list[float] = []
    converged = False
    reseeded = 0
    it = 0
    bar = tqdm(range(iters), desc=f"k-means k={k}", unit="it", disable=not progress, leave=False)
    labels, dists = opts.assign(x, c)
    counts = torch.bincount(labels, minlength=k)
    inertia, n_empty = torch.stack([dists.double().sum(), (counts == 0).sum().double()]).tolist()
    history.append(inertia)
    for it in bar:
        prev_labels = labels
        c, labels, dists, counts, moved = lloyd_step(x, c, labels, dists, opts, int(n_empty))
        reseeded += moved
        # the one host sync per iteration
        inertia, changed, n_empty = torch.stack([dists.double().sum(), (labels != prev_labels).any().double(),
                                                 (counts == 0).sum().double()]).tolist()
        history.append(inertia)
        bar.set_postfix(inertia=f"{inertia:.5g}")
        if moved == 0 and (not changed or history[-2] - inertia <= tol * max(history[-2], 1e-30)):
            converged = True
            break
    bar.close()
    return KMeansResult(c.float().cpu(), history[-1], it + 1, converged, opts.metric, seed, history, reseeded)


def _minibatch(x: torch.Tensor, c: torch.Tensor, opts: LloydOptions, iters: int, tol: float, batch: int,
               seed: int, gen: torch.Generator, progress: bool) -> KMeansResult:
    n, k = x.shape[0], c.shape[0]
    metric = opts.metric
    counts = torch.zeros(k, dtype=torch.float64, device=x.device)
    window = torch.zeros(k, dtype=torch.float64, device=x.device)  # hits since the last empty check
    seen = 0
    scale = float(prepare_scale(x, opts.rows))
    converged = False
    reseeded = 0
    history: list[float] = []
    it = 0
    bar = tqdm(range(iters), desc=f"mini-batch k-means k={k}", unit="it", disable=not progress, leave=False)
    for it in bar:
        idx = torch.randint(n, (batch,), generator=gen).to(x.device)
        xb = x[idx]
        labels, dists = opts.assign(xb, c)
        sums, bcounts = cluster_sums(xb, labels, k, method=opts.sums)
        counts += bcounts
        window += bcounts
        old = c
        # c <- c + (sum - cnt*c) / total_count: the streaming mean of all points seen by each centre
        rate = torch.where(bcounts > 0, 1.0 / counts.clamp_min(1.0), 0.0)
        c = (c.double() + rate[:, None] * (sums - bcounts[:, None] * c.double())).float()
        if metric == "cosine":
            c = torch.nn.functional.normalize(c, dim=1)
            c = torch.where((c.norm(dim=1) == 0)[:, None], old, c)
        seen += batch
        if seen >= n:  # a pass over N rows: centres that got nothing move to far points of this batch
            reseeded += _reseed_empty(c, window, xb, dists, metric)
            counts.masked_fill_(window == 0, 0.0)
            window.zero_()
            seen = 0
        batch_inertia, shift = torch.stack([dists.double().mean(), ((c - old) ** 2).sum(1).mean().double()]).tolist()
        history.append(batch_inertia)
        bar.set_postfix(batch_inertia=f"{batch_inertia:.4g}", shift=f"{shift:.2g}")
        if it > 0 and shift < (tol * tol) * scale:
            converged = True
            break
    bar.close()
    _, dists = opts.assign(x, c)
    return KMeansResult(c.float().cpu(), float(dists.double().sum()), it + 1, converged, metric, seed, history,
                        reseeded)


def prepare_scale(x: torch.Tensor, rows: int) -> float:
    """Mean squared norm of the rows (the data scale used by the mini-batch stopping rule); one host sync."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for lo in range(0, x.shape[0], rows):
        total += (x[lo:lo + rows].double() ** 2).sum()
    return max(float(total) / max(1, x.shape[0]), 1e-30)
