"""K-means in torch: k-means++ init on a sample, full or mini-batch Lloyd iterations.

Distances are computed in row chunks so that no ``N x K`` matrix is ever materialised:
peak extra memory is about ``chunk_rows * K`` floats (see :func:`auto_chunk_rows`). Works on
CPU or CUDA (``device="auto"`` picks CUDA when present). Two metrics:

* ``euclidean``: squared Euclidean distance, centroids are means.
* ``cosine``: spherical k-means. Points and centroids are L2-normalised, the distance is
  ``1 - cos`` and centroids are re-normalised means, so clustering depends on direction only.

Results are deterministic for a seed on CPU: every random draw comes from one seeded
``torch.Generator`` on the CPU, and centroid sums use a deterministic reduction on every device
(``index_add_`` on CPU, a one-hot matmul on CUDA, where ``index_add_`` uses atomics).
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

METRICS = ("euclidean", "cosine")
# Elements of one (chunk_rows x K) distance block: 2**24 floats = 64 MiB in float32.
DEFAULT_BLOCK_ELEMENTS = 1 << 24
# Rows summed in float32 per index_add_ call on CPU before accumulating in float64.
SUM_CHUNK_ROWS = 1 << 16


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

    def summary(self) -> dict[str, Any]:
        """JSON-ready diagnostics (no centroids)."""
        k, dim = self.centroids.shape
        return {"k": k, "dim": dim, "metric": self.metric, "seed": self.seed, "inertia": self.inertia,
                "n_iter": self.n_iter, "converged": self.converged, "reseeded": self.reseeded}


def check_metric(metric: str) -> str:
    """Return ``metric`` or raise ConfigError listing the allowed ones."""
    if metric not in METRICS:
        raise ConfigError(None, f"metric must be one of {list(METRICS)}, found {metric!r}")
    return metric


def auto_chunk_rows(k: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per distance block so that a ``rows x k`` block holds about ``block_elements`` floats."""
    return max(1, block_elements // max(1, k))


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """float32 rows; L2-normalised for the cosine metric (zero rows stay zero)."""
    x = x.float()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    return x


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


def _block_dist(xb: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor | None, metric: str) -> torch.Tensor:
    """Distances of one row block to every centroid: ``(rows, K)``."""
    if metric == "cosine":
        return 1.0 - xb @ c.T
    x_sq = (xb * xb).sum(1, keepdim=True)
    return (x_sq - 2.0 * (xb @ c.T) + c_sq).clamp_min_(0.0)


@torch.no_grad()
def assign_chunked(
    x: torch.Tensor, centroids: torch.Tensor, metric: str, chunk_rows: int | None = None, *,
    prepared: bool = False, centroids_prepared: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row, in row blocks: ``(labels int64 (N,), distances float32 (N,))``.

    ``x`` and ``centroids`` must be on the same device. With ``prepared=True`` both are taken
    as already float32 (and normalised for cosine); ``centroids_prepared`` overrides that for
    the centroids alone. Ties go to the lowest index.
    """
    check_metric(metric)
    c_ready = prepared if centroids_prepared is None else centroids_prepared
    c = centroids if c_ready else prepare(centroids, metric)
    c_sq = (c * c).sum(1)[None, :] if metric == "euclidean" else None
    n = x.shape[0]
    rows = chunk_rows or auto_chunk_rows(c.shape[0])
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dists = torch.empty(n, dtype=torch.float32, device=x.device)
    for lo in range(0, n, rows):
        xb = x[lo:lo + rows]
        if not prepared:
            xb = prepare(xb, metric)
        d, i = _block_dist(xb, c, c_sq, metric).min(1)
        labels[lo:lo + rows] = i
        dists[lo:lo + rows] = d.clamp_min(0.0)
    return labels, dists


def _cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums ``(K, D)`` float64 and counts ``(K,)``, deterministically.

    Row chunks are summed in float32 (``index_add_`` on CPU; a one-hot matmul on CUDA, where
    ``index_add_`` uses atomics) and the partial sums accumulated in float64.
    """
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    counts = torch.bincount(labels, minlength=k).to(torch.float64)
    if x.device.type == "cpu":
        part = torch.empty(k, x.shape[1], dtype=torch.float32)
        rows = max(1, SUM_CHUNK_ROWS)
        for lo in range(0, x.shape[0], rows):
            part.zero_().index_add_(0, labels[lo:lo + rows], x[lo:lo + rows].float())
            sums += part
    else:
        eye = torch.arange(k, device=x.device)
        for lo in range(0, x.shape[0], chunk_rows):
            onehot = (labels[lo:lo + chunk_rows, None] == eye[None, :]).float()
            sums += (onehot.T @ x[lo:lo + chunk_rows].float()).double()
    return sums, counts


def update_centroids(
    x: torch.Tensor, labels: torch.Tensor, old: torch.Tensor, metric: str, chunk_rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd update on prepared rows: ``(new centroids, counts)``; empty clusters keep ``old``."""
    sums, counts = _cluster_sums(x, labels, old.shape[0], chunk_rows)
    return _finish_centroids(sums, counts, old, metric), counts


def _finish_centroids(sums: torch.Tensor, counts: torch.Tensor, old: torch.Tensor, metric: str) -> torch.Tensor:
    """Means of non-empty clusters (normalised for cosine); empty clusters keep ``old``."""
    nonempty = counts > 0
    new = old.clone()
    new[nonempty] = (sums[nonempty] / counts[nonempty, None]).float()
    if metric == "cosine":
        new = torch.nn.functional.normalize(new, dim=1)
        # a mean of exactly opposite directions is zero: keep the old direction
        zero = new.norm(dim=1) == 0
        new[zero] = old[zero]
    return new


@torch.no_grad()
def kmeans_plusplus(
    x: torch.Tensor, k: int, metric: str, generator: torch.Generator, *, sample_size: int | None = None,
) -> torch.Tensor:
    """k-means++ seeding on (a uniform sample of) prepared rows ``x``; returns ``(k, D)`` centroids.

    D^2 sampling: each next centre is drawn with probability proportional to its distance
    (squared Euclidean, or ``1 - cos``) to the nearest centre so far. When every remaining
    distance is zero (fewer distinct points than ``k``), centres are drawn uniformly among
    unchosen rows.
    """
    n = x.shape[0]
    if sample_size is not None and sample_size < n:
        idx = torch.randperm(n, generator=generator)[:sample_size].sort().values
        x = x[idx.to(x.device)]
        n = sample_size
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    c = x[first:first + 1]
    mind = _block_dist(x, c, (c * c).sum(1)[None, :] if metric == "euclidean" else None, metric)[:, 0].clamp_min(0.0)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    taken[first] = True
    for _ in range(1, k):
        w = mind.double().masked_fill(taken, 0.0)
        cs = torch.cumsum(w, 0)
        total = float(cs[-1])
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        nxt = -1
        if total > 0 and math.isfinite(total):  # inverse-CDF draw: only a scalar leaves the device
            nxt = min(int(torch.searchsorted(cs, torch.tensor([u * total], dtype=torch.float64, device=x.device),
                                             right=True)), n - 1)
            if bool(taken[nxt]):
                nxt = int((w > 0).nonzero().flatten()[-1])
        if nxt < 0:
            free = (~taken).nonzero().flatten()
            nxt = int(free[min(int(u * len(free)), len(free) - 1)])
        chosen.append(nxt)
        taken[nxt] = True
        c = x[nxt:nxt + 1]
        d = _block_dist(x, c, (c * c).sum(1)[None, :] if metric == "euclidean" else None, metric)[:, 0].clamp_min(0.0)
        torch.minimum(mind, d, out=mind)
    return x[torch.tensor(chosen, device=x.device)].clone()


def _reseed_empty(
    centroids: torch.Tensor, counts: torch.Tensor, x: torch.Tensor, dists: torch.Tensor, metric: str,
) -> int:
    """Move each empty centroid onto one of the points farthest from its centre (in place)."""
    empty = (counts == 0).nonzero().flatten()
    if len(empty) == 0:
        return 0
    far = torch.topk(dists, min(len(empty), x.shape[0])).indices
    for j, i in zip(empty.tolist(), far.tolist()):
        centroids[j] = x[i]
        dists[i] = 0.0
    if metric == "cosine":
        centroids[:] = torch.nn.functional.normalize(centroids, dim=1)
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
    - ``chunk_rows``: rows per distance block (default: about 16M floats per block).

    Empty clusters (full Lloyd) are moved onto the points farthest from their centres;
    in mini-batch mode, centres that received no point for a whole pass over ``N`` rows are.
    Raises ConfigError for ``k > N`` and other bad arguments.
    """
    xt = as_tensor(x)
    _validate(xt, k, metric, iters, tol, batch_size)
    dev = resolve_device(device)
    n = xt.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    rows = chunk_rows or auto_chunk_rows(k)
    xd = to_device_prepared(xt, metric, dev, rows)
    if init is not None:
        centroids = prepare(as_tensor(init), metric).to(dev)
        if tuple(centroids.shape) != (k, xd.shape[1]):
            raise ConfigError(None, f"init must have shape ({k}, {xd.shape[1]}), found {tuple(centroids.shape)}")
    else:
        sample = init_sample if init_sample is not None else min(n, max(20 * k, 10000))
        centroids = kmeans_plusplus(xd, k, metric, gen, sample_size=min(max(sample, k), n))
    if batch_size is None or batch_size >= n:
        return _lloyd(xd, centroids, metric, iters, tol, rows, seed, progress)
    return _minibatch(xd, centroids, metric, iters, tol, batch_size, rows, seed, gen, progress)


def _lloyd(x: torch.Tensor, c: torch.Tensor, metric: str, iters: int, tol: float, rows: int, seed: int,
           progress: bool) -> KMeansResult:
    k = c.shape[0]
    history: list[float] = []
    converged = False
    reseeded = 0
    it = 0
    bar = tqdm(range(iters), desc=f"k-means k={k}", unit="it", disable=not progress, leave=False)
    labels, dists = assign_chunked(x, c, metric, rows, prepared=True)
    history.append(float(dists.double().sum()))
    for it in bar:
        c, counts = update_centroids(x, labels, c, metric, rows)
        n_empty = _reseed_empty(c, counts, x, dists, metric)
        reseeded += n_empty
        prev_labels = labels
        labels, dists = assign_chunked(x, c, metric, rows, prepared=True)
        inertia = float(dists.double().sum())
        history.append(inertia)
        bar.set_postfix(inertia=f"{inertia:.5g}")
        if n_empty == 0 and (torch.equal(labels, prev_labels)
                             or history[-2] - inertia <= tol * max(history[-2], 1e-30)):
            converged = True
            break
    bar.close()
    return KMeansResult(c.float().cpu(), history[-1], it + 1, converged, metric, seed, history, reseeded)


def _minibatch(x: torch.Tensor, c: torch.Tensor, metric: str, iters: int, tol: float, batch: int, rows: int,
               seed: int, gen: torch.Generator, progress: bool) -> KMeansResult:
    n, k = x.shape[0], c.shape[0]
    counts = torch.zeros(k, dtype=torch.float64, device=x.device)
    window = torch.zeros(k, dtype=torch.float64, device=x.device)  # hits since the last empty check
    seen = 0
    scale = float(prepare_scale(x, rows))
    converged = False
    reseeded = 0
    history: list[float] = []
    it = 0
    bar = tqdm(range(iters), desc=f"mini-batch k-means k={k}", unit="it", disable=not progress, leave=False)
    for it in bar:
        idx = torch.randint(n, (batch,), generator=gen).to(x.device)
        xb = x[idx]
        labels, dists = assign_chunked(xb, c, metric, rows, prepared=True)
        history.append(float(dists.double().mean()))
        sums, bcounts = _cluster_sums(xb, labels, k, rows)
        hit = bcounts > 0
        counts += bcounts
        window += bcounts
        old = c.clone()
        # c <- c + (sum - cnt*c) / total_count: the streaming mean of all points seen by each centre
        rate = torch.zeros_like(counts)
        rate[hit] = 1.0 / counts[hit]
        upd = c.double() + rate[:, None] * (sums - bcounts[:, None] * c.double())
        c = upd.float()
        if metric == "cosine":
            c = torch.nn.functional.normalize(c, dim=1)
            zero = c.norm(dim=1) == 0
            c[zero] = old[zero]
        seen += batch
        if seen >= n:  # a pass over N rows: centres that got nothing move to far points of this batch
            n_empty = _reseed_empty(c, window, xb, dists, metric)
            reseeded += n_empty
            counts[window == 0] = 0.0
            window.zero_()
            seen = 0
        shift = float(((c - old) ** 2).sum(1).mean())
        bar.set_postfix(batch_inertia=f"{history[-1]:.4g}", shift=f"{shift:.2g}")
        if it > 0 and shift < (tol * tol) * scale:
            converged = True
            break
    bar.close()
    _, dists = assign_chunked(x, c, metric, rows, prepared=True)
    return KMeansResult(c.float().cpu(), float(dists.double().sum()), it + 1, converged, metric, seed, history,
                        reseeded)


def prepare_scale(x: torch.Tensor, rows: int) -> float:
    """Mean squared norm of the rows (the data scale used by the mini-batch stopping rule)."""
    total = 0.0
    for lo in range(0, x.shape[0], rows):
        total += float((x[lo:lo + rows].double() ** 2).sum())
    return max(total / max(1, x.shape[0]), 1e-30)
