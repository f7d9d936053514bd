"""The device-side pieces of k-means (:mod:`speechunits.quantize.kmeans` is the algorithm):
distance blocks in a chosen matmul precision, chunked nearest-centroid assignment, and
deterministic per-cluster sums. Nothing here reads a device value back to the host, so on CUDA
a whole Lloyd iteration is queued without waiting (tests/test_kmeans.py runs these on the meta
device, where any such read raises).

Matmul precision (``"fp32"``, ``"tf32"``, ``"bf16"``): TF32 and bf16 round the operands to 10
and 7 stored mantissa bits and accumulate in float32 with a float32 output. On CUDA that is the
tensor cores (``matmul_precision_scope`` for TF32, ``mm(..., out_dtype=float32)`` for bf16); on
the CPU, which has no such units, both are emulated by rounding the operands and multiplying in
float32 (products of such operands are exact), so the CPU tests check the numerics the GPU uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from speechunits.errors import ConfigError

METRICS = ("euclidean", "cosine")
PRECISIONS = ("fp32", "tf32", "bf16")
SUM_METHODS = ("sorted", "index_add")
# Elements of one (chunk_rows x K) distance block: 2**24 floats = 64 MiB in float32.
DEFAULT_BLOCK_ELEMENTS = 1 << 24
# Rows summed in float32 per index_add_ call on CPU before accumulating in float64.
SUM_CHUNK_ROWS = 1 << 16
# Floats gathered per chunk of the sorted segment sums (256 MiB float32), summed in float32.
SUM_BLOCK_ELEMENTS = 1 << 26


def check_metric(metric: str) -> str:
    """Return ``metric`` or raise ConfigError listing the allowed ones."""
    if metric not in METRICS:
        raise ConfigError(None, f"metric must be one of {list(METRICS)}, found {metric!r}")
    return metric


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"tf32"`` on CUDA, ``"fp32"`` elsewhere; other values checked against PRECISIONS."""
    if precision == "auto":
        return "tf32" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(None, f"matmul_precision must be 'auto' or one of {list(PRECISIONS)}, found {precision!r}")
    return precision


def resolve_sum_method(method: str, device: torch.device) -> str:
    """``"auto"`` -> ``index_add`` on the CPU, ``sorted`` elsewhere (CUDA ``index_add_`` uses atomics)."""
    if method == "auto":
        return "index_add" if device.type == "cpu" else "sorted"
    if method not in SUM_METHODS:
        raise ConfigError(None, f"centroid_sums must be 'auto' or one of {list(SUM_METHODS)}, found {method!r}")
    if method == "index_add" and device.type != "cpu":
        raise ConfigError(None, f"centroid_sums='index_add' is deterministic only on the CPU, not on {device}")
    return method


def auto_chunk_rows(k: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per distance block so that a ``rows x k`` block holds about ``block_elements`` floats."""
    return max(1, block_elements // max(1, k))


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """float32 rows; L2-normalised for the cosine metric (zero rows stay zero)."""
    x = x.float()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    return x


# ------------------------------------------------------------------ matmul precision
@contextmanager
def matmul_precision_scope(precision: str, device: torch.device) -> Iterator[None]:
    """On CUDA, float32 matmuls inside run as TF32 for ``"tf32"`` and as IEEE fp32 otherwise.

    The global setting is restored on exit, so ``"fp32"`` means fp32 even when the caller enabled
    TF32 globally. Nothing to do elsewhere (the CPU has no TF32 units; see :func:`operand`).
    """
    if device.type != "cuda":
        yield
        return
    mm = torch.backends.cuda.matmul
    if hasattr(mm, "fp32_precision"):  # torch >= 2.9
        prev = mm.fp32_precision
        mm.fp32_precision = "tf32" if precision == "tf32" else "ieee"
        try:
            yield
        finally:
            mm.fp32_precision = prev
    else:
        prev_allow = mm.allow_tf32
        mm.allow_tf32 = precision == "tf32"
        try:
            yield
        finally:
            mm.allow_tf32 = prev_allow


def round_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 values rounded (to nearest, ties to even) to TF32's 10 stored mantissa bits."""
    bits = t.float().contiguous().view(torch.int32)
    bits = (bits + (0xFFF + ((bits >> 13) & 1))) & -0x2000
    return bits.view(torch.float32)


def emulated(device: torch.device) -> bool:
    """True where TF32/bf16 matmuls are emulated by operand rounding (the CPU)."""
    return device.type == "cpu"


def operand(t: torch.Tensor, precision: str) -> torch.Tensor:
    """A matmul operand in the form :func:`matmul` expects for ``precision``."""
    if precision == "bf16":
        return t.bfloat16().float() if emulated(t.device) else t.bfloat16()
    if precision == "tf32" and emulated(t.device):
        return round_tf32(t)
    return t


def matmul(a_op: torch.Tensor, b_op: torch.Tensor, precision: str) -> torch.Tensor:
    """``a_op @ b_op.T`` as float32, both operands from :func:`operand`.

    bf16 on a device: bf16 operands with a float32 output (``mm(..., out_dtype=float32)``; a bf16
    output would round every distance to 3 significant digits). Older torch without ``out_dtype``
    falls back to a bf16 output.
    """
    if precision == "bf16" and not emulated(a_op.device):
        try:
            return torch.mm(a_op, b_op.T, out_dtype=torch.float32)
        except TypeError:  # torch without mm(out_dtype=)
            return torch.mm(a_op, b_op.T).float()
    return a_op @ b_op.T


def block_scores(x_op: torch.Tensor, c_op: torch.Tensor, c_sq: torch.Tensor | None, metric: str,
                  precision: str) -> torch.Tensor:
    """Scores ``(rows, K)`` of one row block ``x_op = operand(rows)``, smallest = nearest centroid.

    ``c_op`` is ``operand(-2 c)`` (euclidean; score ``|c|^2 - 2 x.c``, one fused ``addmm`` in
    fp32) or ``operand(-c)`` (cosine; score ``-cos``). The row constant ``|x|^2`` is left out:
    it does not change the argmin.
    """
    if metric == "euclidean":
        assert c_sq is not None
        if precision == "bf16" and not emulated(x_op.device):
            return matmul(x_op, c_op, precision).add_(c_sq)
        return torch.addmm(c_sq, x_op, c_op.T)
    return matmul(x_op, c_op, precision)


def centroid_operands(c: torch.Tensor, metric: str, precision: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(c_op, c_sq)`` for :func:`block_scores`: scaled, rounded centroids and ``|c|^2`` (euclidean)."""
    if metric == "euclidean":
        return operand(-2.0 * c, precision), (c * c).sum(1)
    return operand(-c, precision), None


def winner_dist(xb: torch.Tensor, cw: torch.Tensor, metric: str) -> torch.Tensor:
    """Exact float32 distance of each row to its own centroid ``cw`` (rows aligned)."""
    if metric == "euclidean":
        return (xb - cw).square_().sum(1)
    return (1.0 - (xb * cw).sum(1)).clamp_min_(0.0)


@torch.no_grad()
def assign_chunked(
    x: torch.Tensor, centroids: torch.Tensor, metric: str, chunk_rows: int | None = None, *,
    prepared: bool = False, centroids_prepared: bool | None = None, precision: str = "fp32",
    center: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row, in row blocks: ``(labels int64 (N,), distances float32 (N,))``.

    ``x`` and ``centroids`` must be on the same device. With ``prepared=True`` both are taken
    as already float32 (and normalised for cosine); ``centroids_prepared`` overrides that for
    the centroids alone. ``precision`` (fp32/tf32/bf16) is that of the distance matmuls, i.e. of
    the choice of centroid; the returned distances are exact float32 for the chosen centroid.
    ``center`` (euclidean only, e.g. the data mean) is subtracted from rows and centroids before
    the matmul: the argmin is unchanged, the ``|c|^2 - 2 x.c`` cancellation (and so the TF32/bf16
    error) shrinks when the data sit far from the origin. Ties go to the lowest index. No host sync.
    """
    check_metric(metric)
    precision = resolve_precision(precision, x.device)
    c_ready = prepared if centroids_prepared is None else centroids_prepared
    c = centroids if c_ready else prepare(centroids, metric)
    shift = center if metric == "euclidean" else None
    c_op, c_sq = centroid_operands(c if shift is None else c - shift, metric, precision)
    n = x.shape[0]
    rows = chunk_rows or auto_chunk_rows(c.shape[0])
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dists = torch.empty(n, dtype=torch.float32, device=x.device)
    with matmul_precision_scope(precision, x.device):
        for lo in range(0, n, rows):
            xb = x[lo:lo + rows]
            if not prepared:
                xb = prepare(xb, metric)
            xs = xb if shift is None else xb - shift
            i = block_scores(operand(xs, precision), c_op, c_sq, metric, precision).argmin(1)
            labels[lo:lo + rows] = i
            dists[lo:lo + rows] = winner_dist(xb, c[i], metric)
    return labels, dists


# ------------------------------------------------------------------ centroid sums
def cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int, *, method: str = "auto"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums ``(K, D)`` float64 and counts ``(K,)`` float64 of rows ``x``, deterministically.

    ``sorted``: stable sort of the labels, rows gathered in that order and summed per cluster by
    ``torch.segment_reduce`` (float32 within a chunk of ``SUM_BLOCK_ELEMENTS`` floats, float64
    across chunks); no ``(rows, K)`` one-hot, no atomics, no host sync. ``index_add``: CPU only,
    ``index_add_`` over ``SUM_CHUNK_ROWS``-row float32 chunks accumulated in float64.
    """
    method = resolve_sum_method(method, x.device)
    d = x.shape[1]
    sums = torch.zeros(k, d, dtype=torch.float64, device=x.device)
    if method == "index_add":
        counts = torch.bincount(labels, minlength=k).to(torch.float64)
        part = torch.empty(k, d, dtype=torch.float32)
        for lo in range(0, x.shape[0], SUM_CHUNK_ROWS):
            part.zero_().index_add_(0, labels[lo:lo + SUM_CHUNK_ROWS], x[lo:lo + SUM_CHUNK_ROWS].float())
            sums += part
        return sums, counts
    sorted_labels, order = torch.sort(labels, stable=True)
    bounds = torch.arange(k + 1, device=x.device, dtype=sorted_labels.dtype)
    counts = torch.searchsorted(sorted_labels, bounds).diff().to(torch.float64)
    rows = max(1, SUM_BLOCK_ELEMENTS // max(1, d))
    for lo in range(0, x.shape[0], rows):
        offsets = torch.searchsorted(sorted_labels[lo:lo + rows], bounds)
        block = x[order[lo:lo + rows]].float()
        # unsafe=True: the offsets are valid by construction; the checks would sync with the host
        sums += torch.segment_reduce(block, "sum", offsets=offsets, axis=0, unsafe=True, initial=0.0)
    return sums, counts


def update_centroids(
    x: torch.Tensor, labels: torch.Tensor, old: torch.Tensor, metric: str, *, sums: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd update on prepared rows: ``(new centroids, counts)``; empty clusters keep ``old``."""
    total, counts = cluster_sums(x, labels, old.shape[0], method=sums)
    return finish_centroids(total, counts, old, metric), counts


def finish_centroids(sums: torch.Tensor, counts: torch.Tensor, old: torch.Tensor, metric: str) -> torch.Tensor:
    """Means of non-empty clusters (normalised for cosine); empty clusters keep ``old``. No host sync."""
    nonempty = (counts > 0)[:, None]
    new = torch.where(nonempty, (sums / counts.clamp_min(1.0)[:, None]).float(), old)
    if metric == "cosine":
        new = torch.nn.functional.normalize(new, dim=1)
        # a mean of exactly opposite directions is zero: keep the old direction
        new = torch.where((new.norm(dim=1) == 0)[:, None], old, new)
    return new


def data_mean(x: torch.Tensor, rows: int) -> torch.Tensor:
    """float32 mean row of ``x`` (float64 accumulation in row blocks), on ``x``'s device; no host sync."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for lo in range(0, x.shape[0], rows):
        total += x[lo:lo + rows].double().sum(0)
    return (total / max(1, x.shape[0])).float()
