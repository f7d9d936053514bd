"""Speed of greedy Sylber segmentation: numba kernel vs the plain-numpy reference.

Run from the repository root::

    .venv/bin/python benchmarks/segment_speed.py            # full table (a few minutes)
    .venv/bin/python benchmarks/segment_speed.py --quick    # small sizes, for a smoke test

Features are synthetic but syllable-like: piecewise-constant directions (norm ~5.5) that drift a
little inside a syllable, Gaussian noise, and low-norm silence gaps every few syllables.
Part 1 times one utterance of T frames (d=768) for growing T: frames/s, ns/frame (flat = linear
time) and the speed-up. Part 2 times 1,000 utterances (200-800 frames): one parallel
``greedy_segment_batch`` call on the flat (CSR) layout, a Python loop of ``greedy_segment``, and
a Python loop of the reference. Medians of repeats, ``time.perf_counter``, JIT warmed up first.
The table is printed and written to ``benchmarks/results/segment_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechunits.io_utils import atomic_write_text  # noqa: E402
from speechunits.sylber.segment import greedy_segment, greedy_segment_batch  # noqa: E402
from speechunits.sylber.segment_reference import greedy_segment_reference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "segment_speed.md"


def synthetic_features(num_frames: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(num_frames, dim) float32 syllable-like features with silence gaps."""
    labels = np.empty(num_frames, np.int64)
    speech = np.empty(num_frames, bool)
    t, syl = 0, 0
    while t < num_frames:
        if syl % 6 == 5:  # silence gap
            n = int(rng.integers(3, 20))
            speech[t : t + n] = False
        else:
            n = int(rng.integers(4, 16))
            speech[t : t + n] = True
        labels[t : t + n] = syl
        t += n
        syl += 1
    centers = rng.standard_normal((syl, dim), dtype=np.float32)
    centers *= np.float32(5.5) / np.linalg.norm(centers, axis=1, keepdims=True)
    drift = rng.standard_normal((syl, dim), dtype=np.float32) * np.float32(0.01)
    pos = np.arange(num_frames) - np.searchsorted(labels, labels)  # frame index inside its unit
    x = np.empty((num_frames, dim), np.float32)
    for c in range(0, num_frames, 16384):  # chunks keep temporaries small for long inputs
        sl = slice(c, min(c + 16384, num_frames))
        lab, sp = labels[sl], speech[sl]
        chunk = rng.standard_normal((len(lab), dim), dtype=np.float32)
        chunk *= np.where(sp, np.float32(0.08), np.float32(0.03))[:, None]
        chunk[sp] += centers[lab[sp]] + drift[lab[sp]] * pos[sl][sp, None].astype(np.float32)
        x[sl] = chunk
    return x


def time_call(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def python_repeats(num_frames: int) -> int:
    return 3 if num_frames <= 2000 else 1


def bench_lengths(sizes: list[int], dim: int, rng: np.random.Generator) -> list[str]:
    rows = [
        "| T (frames) | segments | numba frames/s | python frames/s | speed-up | numba ns/frame | python ns/frame | equal |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for n in sizes:
        x = synthetic_features(n, dim, rng)
        seg = greedy_segment(x)
        ref = greedy_segment_reference(x)
        t_nb = time_call(lambda: greedy_segment(x), 7 if n <= 8000 else 3)
        t_py = time_call(lambda: greedy_segment_reference(x), python_repeats(n))
        rows.append(
            f"| {n} | {len(seg)} | {n / t_nb:,.0f} | {n / t_py:,.0f} | {t_py / t_nb:.1f}x | "
            f"{t_nb / n * 1e9:,.0f} | {t_py / n * 1e9:,.0f} | {'yes' if np.array_equal(seg, ref) else 'NO'} |"
        )
        print(rows[-1], flush=True)
    return rows


def bench_batch(num_utts: int, min_len: int, max_len: int, dim: int, rng: np.random.Generator) -> list[str]:
    lengths = rng.integers(min_len, max_len + 1, size=num_utts).astype(np.int64)
    flat = synthetic_features(int(lengths.sum()), dim, rng)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    utts = [flat[offsets[i] : offsets[i + 1]] for i in range(num_utts)]
    total = int(lengths.sum())

    batch = greedy_segment_batch(flat, lengths)  # warm-up (also compiles the parallel kernel)
    loop = [greedy_segment(u) for u in utts]
    same = all(np.array_equal(a, b) for a, b in zip(batch, loop))
    t_batch = time_call(lambda: greedy_segment_batch(flat, lengths), 5)
    t_list = time_call(lambda: greedy_segment_batch(utts), 3)
    t_loop = time_call(lambda: [greedy_segment(u) for u in utts], 3)
    t0 = time.perf_counter()
    ref = [greedy_segment_reference(u) for u in utts]
    t_ref = time.perf_counter() - t0
    same_ref = all(np.array_equal(a, b) for a, b in zip(batch, ref))

    def row(name: str, t: float) -> str:
        return f"| {name} | {t:.3f} | {num_utts / t:,.0f} | {total / t:,.0f} | {t / t_batch:.1f}x |"

    rows = [
        f"{num_utts} utterances, {total:,} frames (lengths {min_len}-{max_len}), d={dim}; "
        f"batch == loop: {'yes' if same else 'NO'}, batch == reference: {'yes' if same_ref else 'NO'}",
        "",
        "| method | seconds | utterances/s | frames/s | time vs batch |",
        "|---|---:|---:|---:|---:|",
        row("`greedy_segment_batch` (flat CSR, one prange call)", t_batch),
        row("`greedy_segment_batch` (list of arrays: concatenate + call)", t_list),
        row("Python loop of `greedy_segment`", t_loop),
        row("Python loop of `greedy_segment_reference` (1 run)", t_ref),
    ]
    for r in rows[4:]:
        print(r, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000, 32000, 64000])
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--utts", type=int, default=1000)
    p.add_argument("--min-len", type=int, default=200)
    p.add_argument("--max-len", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="sizes 500 2000, 100 utterances")
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown file for the table")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.utts = [500, 2000], 100
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    warm = synthetic_features(300, args.dim, rng)
    greedy_segment(warm)
    greedy_segment_batch([warm, warm])
    jit_s = time.perf_counter() - t0
    header = [
        "# Greedy segmentation speed (`benchmarks/segment_speed.py`)",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs visible; numba {numba.__version__} "
        f"threads: {numba.get_num_threads()} (layer: {numba.threading_layer()}); numpy {np.__version__}",
        f"- d = {args.dim}; JIT warm-up / cache load: {jit_s:.2f} s; seed {args.seed}",
        "- python = `segment_reference.greedy_segment_reference` (one numpy step per frame, same arithmetic); "
        "median of 7 (numba, T <= 8000) / 3 runs; python median of 3 (T <= 2000) or 1 run",
        "",
        "## One utterance, growing T",
        "",
    ]
    print("\n".join(header), flush=True)
    rows = bench_lengths(args.sizes, args.dim, rng)
    print("\n## Batch\n", flush=True)
    batch_rows = bench_batch(args.utts, args.min_len, args.max_len, args.dim, rng)
    text = "\n".join(header + rows + ["", "## Batch", ""] + batch_rows) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
