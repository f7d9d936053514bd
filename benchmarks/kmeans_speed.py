"""Benchmark: k-means Lloyd iterations and k-means++ seeding (speechunits.quantize.kmeans) vs the
previous implementation's approach, per matmul precision, with the distance matmuls as the limit.

Rows, all measured in one run on one device from the same data and the same initial centroids:

* ``previous``: the approach before issue 15, re-implemented here as the baseline: k-means++ one
  centre at a time with an inverse-CDF draw and three host syncs per centre; distances as
  ``x^2 - 2 x.c + c^2`` in separate passes; centroid sums as a dense one-hot matmul per row chunk
  (its CUDA path; the CPU used ``index_add_``, still the CPU default) accumulated in float64;
  boolean-mask updates and two host syncs per iteration. fp32 (and tf32 on CUDA when asked).
* ``current <precision>``: ``kmeans_plusplus`` with the default batched device-side draws, then
  ``lloyd_step`` (fused ``addmm`` distances, sorted segment sums, one host sync per iteration).
* ``distance matmuls only``: the ``N x K x D`` products of one iteration in the same row blocks,
  nothing else: the physical limit of a Lloyd iteration at that precision.

Per row: seconds per Lloyd iteration (median), seeding seconds, ratio against the previous fp32
iteration, peak GPU memory, and for each precision the deviation of its centroids after ``--iters``
iterations from the fp32 ones (mean / max centroid shift over the RMS radius of the data, relative
inertia gap, share of identical labels). Iterations run without early stopping.

Usage::

    python benchmarks/kmeans_speed.py --quick                      # CPU smoke test, seconds
    python benchmarks/kmeans_speed.py --n 100000 --dim 768 --k 1000 --iters 3 --threads 2 \\
        --out benchmarks/results/kmeans_speed.md                   # the CPU table
    python benchmarks/kmeans_speed.py --device cuda --n 1000000 --dim 768 --k 10000 --iters 10 \\
        --precision fp32 tf32 bf16                                 # the issue-15 GPU configuration

Writes a markdown report to ``--out`` when given (appending the exact command line).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speechunits.quantize.kmeans as km  # noqa: E402
import speechunits.quantize.kmeans_ops as ops  # noqa: E402
from speechunits.device import resolve_device  # noqa: E402


# ------------------------------------------------------------------ the previous approach (baseline)
def prev_dist(xb: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances as before: four elementwise passes over the ``(rows, K)`` block."""
    x_sq = (xb * xb).sum(1, keepdim=True)
    return (x_sq - 2.0 * (xb @ c.T) + (c * c).sum(1)[None, :]).clamp_min_(0.0)


def prev_seed(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Sequential k-means++: one centre per round, inverse-CDF draw, three host syncs per centre."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    mind = prev_dist(x, x[first:first + 1])[:, 0]
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    taken[first] = True
    for _ in range(1, k):
        w = mind.double().masked_fill(taken, 0.0)
        cs = torch.cumsum(w, 0)
        total = float(cs[-1])
        u = float(torch.rand(1, generator=gen, dtype=torch.float64))
        nxt = min(int(torch.searchsorted(cs, torch.tensor([u * total], dtype=torch.float64, device=x.device),
                                         right=True)), n - 1)
        if bool(taken[nxt]):
            nxt = int((w > 0).nonzero().flatten()[-1])
        chosen.append(nxt)
        taken[nxt] = True
        torch.minimum(mind, prev_dist(x, x[nxt:nxt + 1])[:, 0], out=mind)
    return x[torch.tensor(chosen, device=x.device)].clone()


def prev_iteration(x: torch.Tensor, c: torch.Tensor, labels: torch.Tensor, dists: torch.Tensor, rows: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """One previous-style Lloyd iteration: one-hot sums, masked update, empty-cluster check,
    4-pass assignment; 3 host syncs (more when clusters are empty)."""
    k = c.shape[0]
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    counts = torch.bincount(labels, minlength=k).to(torch.float64)
    eye = torch.arange(k, device=x.device)
    for lo in range(0, x.shape[0], rows):
        onehot = (labels[lo:lo + rows, None] == eye[None, :]).float()
        sums += (onehot.T @ x[lo:lo + rows]).double()
    nonempty = counts > 0
    new = c.clone()
    new[nonempty] = (sums[nonempty] / counts[nonempty, None]).float()
    empty = (counts == 0).nonzero().flatten()
    if len(empty):
        far = torch.topk(dists, min(len(empty), x.shape[0])).indices
        for j, i in zip(empty.tolist(), far.tolist()):
            new[j] = x[i]
            dists[i] = 0.0
    out = torch.empty_like(labels)
    dists = torch.empty(x.shape[0], device=x.device)
    for lo in range(0, x.shape[0], rows):
        d, i = prev_dist(x[lo:lo + rows], new).min(1)
        out[lo:lo + rows], dists[lo:lo + rows] = i, d
    inertia = float(dists.double().sum())
    torch.equal(out, labels)  # the previous convergence test: another sync
    return new, out, dists, inertia


# ------------------------------------------------------------------ measurement helpers
def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


@dataclass
class Row:
    name: str
    precision: str
    iter_s: list[float] = field(default_factory=list)
    seed_s: float | None = None
    peak: float | None = None
    centroids: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    inertia: float | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return sorted(self.iter_s)[len(self.iter_s) // 2] if self.iter_s else None


def make_data(n: int, dim: int, k: int, seed: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian mixture (2k components at scale 3, unit spread, offset 1) on ``dev`` and k initial rows."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    centres = torch.randn(2 * k, dim, generator=gen, device=dev) * 3 + 1.0
    x = torch.empty(n, dim, device=dev)
    step = 1 << 16
    for lo in range(0, n, step):
        m = min(step, n - lo)
        comp = torch.randint(2 * k, (m,), generator=gen, device=dev)
        x[lo:lo + m] = centres[comp] + torch.randn(m, dim, generator=gen, device=dev)
    init_idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values
    return x, x[init_idx.to(dev)].clone()


def run_previous(x: torch.Tensor, init: torch.Tensor, args: argparse.Namespace, precision: str, rows: int,
                 sample: int) -> Row:
    dev = x.device
    row = Row("previous (one-hot sums, per-centre seeding)", precision)
    with km.matmul_precision_scope(precision, dev):
        if not args.skip_previous_seeding and precision == "fp32":
            gen = torch.Generator().manual_seed(args.seed)
            idx = torch.randperm(x.shape[0], generator=gen)[:sample].sort().values.to(dev)
            xs = x[idx]
            sync(dev)
            t = time.perf_counter()
            prev_seed(xs, args.k, gen)
            sync(dev)
            row.seed_s = time.perf_counter() - t
            del xs
        reset_peak(dev)
        c = init.clone()
        labels = torch.empty(x.shape[0], dtype=torch.int64, device=dev)
        dists = torch.empty(x.shape[0], device=dev)
        for lo in range(0, x.shape[0], rows):
            dists[lo:lo + rows], labels[lo:lo + rows] = prev_dist(x[lo:lo + rows], c).min(1)
        for _ in range(args.previous_iters):
            sync(dev)
            t = time.perf_counter()
            c, labels, dists, row.inertia = prev_iteration(x, c, labels, dists, rows)
            sync(dev)
            row.iter_s.append(time.perf_counter() - t)
    row.peak = peak_mib(dev)
    return row


def run_current(x: torch.Tensor, init: torch.Tensor, args: argparse.Namespace, precision: str, rows: int,
                sample: int, center: torch.Tensor) -> Row:
    dev = x.device
    row = Row("current", precision)
    center = center if precision != "fp32" else None  # as kmeans() does
    gen = torch.Generator().manual_seed(args.seed)
    sync(dev)
    t = time.perf_counter()
    km.kmeans_plusplus(x, args.k, "euclidean", gen, sample_size=sample, precision=precision, center=center)
    sync(dev)
    row.seed_s = time.perf_counter() - t
    reset_peak(dev)
    opts = km.LloydOptions("euclidean", rows, precision, km.resolve_sum_method("auto", dev), center)
    c = init.clone()
    labels, dists = opts.assign(x, c)
    counts = torch.bincount(labels, minlength=args.k)
    n_empty = int((counts == 0).sum())
    for _ in range(args.iters):
        sync(dev)
        t = time.perf_counter()
        prev = labels
        c, labels, dists, counts, _moved = km.lloyd_step(x, c, labels, dists, opts, n_empty)
        inertia, _changed, n_empty_f = torch.stack([dists.double().sum(), (labels != prev).any().double(),
                                                    (counts == 0).sum().double()]).tolist()
        n_empty = int(n_empty_f)
        row.iter_s.append(time.perf_counter() - t)
    row.peak = peak_mib(dev)
    row.centroids, row.labels, row.inertia = c.cpu(), labels.cpu(), inertia
    return row


def run_exact_seeding(x: torch.Tensor, args: argparse.Namespace, precision: str, sample: int,
                      center: torch.Tensor) -> Row:
    dev = x.device
    row = Row("current seeding, exact (init_batch=1)", precision)
    center = center if precision != "fp32" else None  # as kmeans() does
    gen = torch.Generator().manual_seed(args.seed)
    sync(dev)
    t = time.perf_counter()
    km.kmeans_plusplus(x, args.k, "euclidean", gen, sample_size=sample, precision=precision, center=center, batch=1)
    sync(dev)
    row.seed_s = time.perf_counter() - t
    return row


def run_matmul_only(x: torch.Tensor, init: torch.Tensor, precision: str, rows: int, reps: int) -> Row:
    """Only the distance products of one iteration, operands prepared once: the compute limit."""
    dev = x.device
    row = Row("distance matmuls only (limit)", precision)
    x_op = ops.operand(x, precision)
    c_op = ops.operand(init, precision)
    reset_peak(dev)
    with km.matmul_precision_scope(precision, dev):
        for _ in range(reps):
            sync(dev)
            t = time.perf_counter()
            for lo in range(0, x.shape[0], rows):
                ops.matmul(x_op[lo:lo + rows], c_op, precision)
            sync(dev)
            row.iter_s.append(time.perf_counter() - t)
    row.peak = peak_mib(dev)
    return row


def warm_up(x: torch.Tensor, init: torch.Tensor, precisions: list[str]) -> None:
    """Load the kernels (cuBLAS handles, sort, segment sums) before anything is timed."""
    xs = x[: min(len(x), 4 * len(init))]
    for q in precisions:
        try:
            labels, _ = km.assign_chunked(xs, init, "euclidean", prepared=True, precision=q)
            km.cluster_sums(xs, labels, len(init), method=km.resolve_sum_method("auto", x.device))
            prev_dist(xs[:64], init)
            sync(x.device)
        except Exception:  # noqa: BLE001 - the timed rows report the failure
            traceback.print_exc()


def guarded(fn, name: str, precision: str, *a) -> Row:  # type: ignore[no-untyped-def]
    """Run one measurement; a failure becomes a row that says why (the other rows still print)."""
    try:
        return fn(*a)
    except Exception as err:  # noqa: BLE001 - reported in the table
        traceback.print_exc()
        return Row(name, precision, note=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "" if v is None else format(v, spec)


def report(args: argparse.Namespace, dev: torch.device, rows_per_block: int, sample: int, results: list[Row],
           x: torch.Tensor, center: torch.Tensor) -> str:
    flops = 2.0 * args.n * args.k * args.dim
    base = next((r for r in results if r.name.startswith("previous") and r.precision == "fp32" and r.median), None)
    if dev.type == "cuda":
        where = f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}"
    else:
        where = (f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads, "
                 f"torch {torch.__version__}")
    lines = [
        f"# k-means speed: N={args.n}, D={args.dim}, k={args.k}, {args.iters} Lloyd iterations",
        "",
        f"{where}. Distance blocks of {rows_per_block} rows; k-means++ on a {sample}-row sample "
        f"(default batch {km.init_batch_size(args.k)} centres per round). One iteration is "
        f"{flops / 1e12:.3f} TFLOP of distance products. Previous approach: {args.previous_iters} iteration(s).",
        "",
        "| method | precision | s / Lloyd iteration (median) | vs previous fp32 | seeding s | peak GPU MiB "
        "| TFLOP/s of the distance products | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{base.median / r.median:.1f}x" if base and r.median else ""
        tflops = f"{flops / r.median / 1e12:.3g}" if r.median else ""
        lines.append(f"| {r.name} | {r.precision} | {fmt(r.median, '.4f')} | {ratio} | {fmt(r.seed_s, '.3f')} "
                     f"| {fmt(r.peak, '.0f')} | {tflops} | {r.note} |")
    cur = {r.precision: r for r in results if r.name == "current" and r.centroids is not None}
    ref = cur.get("fp32") or next(iter(cur.values()), None)
    if ref is not None and len(cur) > 1:
        radius = float(((x - center) ** 2).sum(1).double().mean().sqrt())
        lines += ["", f"Centroids after {args.iters} iterations from the same init vs {ref.precision} (shift over the "
                  f"RMS radius {radius:.4g} of the data; inertia gap; identical labels):", ""]
        for p, r in cur.items():
            if r is ref:
                continue
            shift = (r.centroids - ref.centroids).norm(dim=1) / radius
            gap = (r.inertia - ref.inertia) / ref.inertia
            same = float((r.labels == ref.labels).double().mean())
            lines.append(f"- {p}: mean shift {shift.mean():.2e}, max shift {shift.max():.2e}, inertia {gap:+.2e}, "
                         f"{100 * same:.3f}% same labels")
    prev = next((r for r in results if r.name.startswith("previous") and r.precision == "fp32"
                 and r.inertia is not None), None)
    if prev is not None and ref is not None and args.previous_iters == args.iters:
        gap = (ref.inertia - prev.inertia) / prev.inertia
        lines.append(f"- current {ref.precision} vs the previous approach (fp32, same init): inertia {gap:+.2e}")
    lines += ["", "Per-iteration seconds: " + "; ".join(
        f"{r.name} {r.precision}: {', '.join(f'{t:.3f}' for t in r.iter_s)}" for r in results if r.iter_s), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--iters", type=int, default=3, help="Lloyd iterations timed per precision (no early stop)")
    p.add_argument("--previous-iters", type=int, default=None,
                   help="iterations of the previous approach (default min(iters, 3))")
    p.add_argument("--precision", nargs="+", default=None, choices=list(km.PRECISIONS),
                   help="matmul precisions to time (default: fp32 on cpu, fp32 tf32 bf16 on cuda)")
    p.add_argument("--init-sample", type=int, default=None, help="k-means++ sample rows (default as kmeans())")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per distance block (default as kmeans())")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--skip-previous-seeding", action="store_true", help="do not time the per-centre seeding")
    p.add_argument("--quick", action="store_true", help="small CPU-sized run: N=20000, D=128, k=256, 3 iterations")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    args = p.parse_args()
    if args.quick:
        args.n, args.dim, args.k, args.iters = 20_000, 128, 256, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    precisions = args.precision or (["fp32", "tf32", "bf16"] if dev.type == "cuda" else ["fp32"])
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]
    args.previous_iters = min(args.iters, 3) if args.previous_iters is None else args.previous_iters
    rows = args.chunk_rows or km.auto_chunk_rows(args.k)
    sample = min(args.n, max(args.init_sample or max(20 * args.k, 10000), args.k))
    print(f"data {args.n} x {args.dim} on {dev} ...", file=sys.stderr)
    with torch.no_grad():
        x, init = make_data(args.n, args.dim, args.k, args.seed, dev)
        center = km.data_mean(x, km.auto_chunk_rows(args.dim))
        results: list[Row] = []
        warm_up(x, init, precisions)
        prev_precisions = [q for q in ("fp32", "tf32") if q in precisions and (q == "fp32" or dev.type == "cuda")]
        for q in prev_precisions:
            print(f"previous approach {q} ...", file=sys.stderr)
            results.append(guarded(run_previous, "previous (one-hot sums, per-centre seeding)", q,
                                   x, init, args, q, rows, sample))
        for q in precisions:
            print(f"current {q} ...", file=sys.stderr)
            results.append(guarded(run_current, "current", q, x, init, args, q, rows, sample, center))
        results.append(guarded(run_exact_seeding, "current seeding, exact (init_batch=1)", precisions[-1],
                               x, args, precisions[-1], sample, center))
        for q in precisions:
            results.append(guarded(run_matmul_only, "distance matmuls only (limit)", q, x, init, q, rows,
                                   max(1, min(args.iters, 3))))
    text = report(args, dev, rows, sample, results, x, center)
    text += f"\nCommand: `python benchmarks/kmeans_speed.py {shlex.join(sys.argv[1:])}`\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if any(r.note.startswith("failed") for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
