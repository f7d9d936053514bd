"""Benchmark: chunked torch k-means (speechunits.quantize.kmeans) vs a straightforward numpy Lloyd's.

Both start from the same initial centroids (k rows drawn with one seeded RNG) and run the
same number of full Lloyd iterations (no early stop), so the final centroids should agree
up to float rounding; the script checks that (label agreement, relative inertia gap).

The numpy baseline is the textbook vectorised version: the full ``N x K`` distance matrix
``|x|^2 - 2 x c^T + |c|^2`` (float32, one BLAS GEMM), ``argmin``, then ``np.add.at`` sums.
Ours computes the same quantities in row blocks of about 16M floats.

Each method runs in its own subprocess. Peak memory is the growth of the process's peak RSS
(``VmHWM``, reset via ``/proc/self/clear_refs`` once the data exists) during the k-means
run, so it excludes the shared input array. Timing is wall-clock per iteration (median).

Usage::

    python benchmarks/kmeans_speed.py                       # 200000 x 768, k=1000, 3 iterations
    python benchmarks/kmeans_speed.py --n 50000 --iters 2   # smaller
    python benchmarks/kmeans_speed.py --device cuda         # adds a GPU column when available

Writes a markdown table to ``benchmarks/results/kmeans_speed.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_data(n: int, dim: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-mixture float32 data (generated in chunks: no float64 temporaries) and the shared init."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(k, 2) * 2, dim), dtype=np.float32) * 3
    x = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for lo in range(0, n, step):
        m = min(step, n - lo)
        x[lo:lo + m] = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, dim), dtype=np.float32)
    init = x[np.sort(rng.choice(n, size=k, replace=False))].copy()
    return x, init


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def numpy_lloyd(x: np.ndarray, init: np.ndarray, iters: int) -> tuple[np.ndarray, list[float], list[float], list[float]]:
    """Textbook numpy Lloyd's: full N x K distances, argmin, np.add.at; returns (centroids, secs/iter, inertia)."""
    c = init.astype(np.float32).copy()
    k = c.shape[0]
    x_sq = (x * x).sum(1)
    times, inertias, assign_times = [], [], []
    for _ in range(iters):
        t = time.perf_counter()
        d = x_sq[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
        labels = d.argmin(1)
        inertias.append(float(np.maximum(d[np.arange(len(x)), labels], 0).astype(np.float64).sum()))
        del d
        assign_times.append(time.perf_counter() - t)
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        nz = counts > 0
        c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        times.append(time.perf_counter() - t)
    return c, times, inertias, assign_times


def torch_lloyd(x: np.ndarray, init: np.ndarray, iters: int, device: str
                ) -> tuple[np.ndarray, list[float], list[float], list[float]]:
    """Ours: one assignment + update per iteration, same arithmetic as kmeans() without early stop."""
    import torch

    from speechunits.quantize.kmeans import (
        assign_chunked, auto_chunk_rows, resolve_device, to_device_prepared, update_centroids)

    dev = resolve_device(device)
    rows = auto_chunk_rows(init.shape[0])
    xd = to_device_prepared(torch.from_numpy(x), "euclidean", dev, rows)
    c = torch.from_numpy(init).to(dev)
    times, inertias, assign_times = [], [], []
    for _ in range(iters):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        labels, dists = assign_chunked(xd, c, "euclidean", rows, prepared=True)
        inertias.append(float(dists.double().sum()))
        assign_times.append(time.perf_counter() - t)
        c, _counts = update_centroids(xd, labels, c, "euclidean", rows)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return c.cpu().numpy(), times, inertias, assign_times


def worker(args: argparse.Namespace) -> None:
    x, init = make_data(args.n, args.dim, args.k, args.seed)
    rss0 = _rss_kib("VmRSS")
    reset = _reset_peak()
    if args.method == "numpy":
        cent, times, inertias, assign_times = numpy_lloyd(x, init, args.iters)
    else:
        cent, times, inertias, assign_times = torch_lloyd(x, init, args.iters, args.device)
    peak = _rss_kib("VmHWM")
    gpu_peak = None
    if args.method == "torch" and args.device.startswith("cuda"):
        import torch

        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    np.save(args.centroids_out, cent)
    print(json.dumps({"method": args.method, "device": args.device, "times": times, "inertias": inertias,
                      "assign_times": assign_times, "peak_extra_mib": (peak - rss0) / 1024 if reset else None, "gpu_peak_mib": gpu_peak}))


def run_one(args: argparse.Namespace, method: str, device: str, tmp: Path) -> dict:
    cent_path = tmp / f"centroids_{method}_{device.replace(':', '')}.npy"
    cmd = [sys.executable, __file__, "--worker", "--method", method, "--device", device, "--n", str(args.n),
           "--dim", str(args.dim), "--k", str(args.k), "--iters", str(args.iters), "--seed", str(args.seed),
           "--threads", str(args.threads), "--centroids-out", str(cent_path)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads)}
    print(f"running {method} on {device} ...", file=sys.stderr)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["centroids"] = np.load(cent_path)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="BLAS/torch threads for every method")
    p.add_argument("--device", default="cpu", help="extra torch device to time besides cpu (e.g. cuda)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kmeans_speed.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--centroids-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        worker(args)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        runs = [run_one(args, "numpy", "cpu", tmp), run_one(args, "torch", "cpu", tmp)]
        if args.device != "cpu":
            runs.append(run_one(args, "torch", args.device, tmp))
    base = runs[0]
    base_t = float(np.median(base["times"]))
    x, _ = make_data(args.n, args.dim, args.k, args.seed)
    lines = [
        "# k-means speed: chunked torch vs numpy Lloyd's",
        "",
        f"N={args.n}, D={args.dim}, k={args.k}, {args.iters} full Lloyd iterations from the same init "
        f"(seed {args.seed}), float32, {args.threads} threads; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} visible cores. Machine shared with other jobs: absolute times are noisy, "
        "compare within a row set.",
        "",
        "| method | device | s/iter (median) | of which assign | of which update | ratio vs numpy "
        "| peak extra RSS (MiB) | GPU peak (MiB) | final inertia |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    from speechunits.quantize.codebook import assign

    ref_labels = assign(x, base["centroids"], "euclidean")
    agree = []
    for r in runs:
        t = float(np.median(r["times"]))
        ta = float(np.median(r["assign_times"]))
        tu = float(np.median(np.subtract(r["times"], r["assign_times"])))
        mem = "n/a" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
        gpu = "" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:.0f}"
        lines.append(f"| {r['method']} | {r['device']} | {t:.2f} | {ta:.2f} | {tu:.2f} | {base_t / t:.2f}x | {mem} "
                     f"| {gpu} | "
                     f"{r['inertias'][-1]:.6g} |")
        agree.append((r["method"], r["device"], float((assign(x, r["centroids"], "euclidean") == ref_labels).mean()),
                      abs(r["inertias"][-1] - base["inertias"][-1]) / base["inertias"][-1]))
    lines += ["", "Agreement with the numpy baseline after the last iteration (labels of all N points under each "
              "method's final centroids; relative gap of the last inertia):", ""]
    lines += [f"- {m} {d}: {100 * a:.3f}% same labels, inertia gap {g:.2e}" for m, d, a, g in agree]
    lines += ["", f"Per-iteration seconds: " + "; ".join(
        f"{r['method']}/{r['device']} {', '.join(f'{t:.2f}' for t in r['times'])}" for r in runs),
        "", f"Numpy's N x K float32 distance matrix alone is {args.n * args.k * 4 / 2**20:.0f} MiB; the torch "
        f"version's distance block is {min(args.n, (1 << 24) // args.k) * args.k * 4 / 2**20:.0f} MiB.", ""]
    from speechunits.io_utils import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
