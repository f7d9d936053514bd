"""Speed and agreement of greedy Sylber segmentation against the public reference ``get_segment``.

The baseline is the public Sylber reference implementation (``sylber/utils/segment_utils.py``
of github.com/Berkeley-Speech-Group/sylber), loaded from a path you give; it is not part of this
repository. Extract it once, then run from the repository root::

    mkdir -p /tmp/sylber_ref
    git --git-dir=<mirror of Berkeley-Speech-Group/sylber> show HEAD:sylber/utils/segment_utils.py \\
        > /tmp/sylber_ref/segment_utils.py        # or download that file from GitHub
    .venv/bin/python benchmarks/segment_speed.py --reference /tmp/sylber_ref/segment_utils.py
    .venv/bin/python benchmarks/segment_speed.py --reference ... --quick      # smoke test
    .venv/bin/python benchmarks/segment_speed.py --reference ... \\
        --agree-model path/to/model.pt --agree-model random --agree-audio DIR    # real features

Part 1 times one utterance of T frames (d = 768) for T = 2k, 8k, 32k: the reference, the
default kernel (float64 accumulators), the float32 option and the plain-numpy bit-exact oracle
(``segment_reference.py``), in interleaved repeats (a, b, c, a, b, c, ...), medians. Speed-ups
are ratios within this run. A "physical limit" row times one pass over the same float32 frames
(a numba sum of every element). Each row says whether the segments are identical to the
reference's and to the oracle's. Part 2 times ``greedy_segment_batch`` on 1,000 utterances with
1 and then 2 numba threads, interleaved, with the process CPU time (a 2-thread run that gets
2 busy cores uses about twice the CPU seconds per wall second), and the same for a control:
one parallel float32 pass over the same frames. Part 3 (optional) measures agreement on real model
features: the fraction of utterances whose segments are identical to the oracle's (and to the
reference's), and the boundary F1 where they are not.

Synthetic features are syllable-like: piecewise-constant random directions (norm ~5.5) that
drift a little inside a syllable, Gaussian noise, and low-norm silence gaps every few syllables.
The table is printed and written to ``benchmarks/results/segment_speed.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechunits.eval.boundaries import evaluate_boundaries, segment_boundaries  # noqa: E402
from speechunits.io_utils import atomic_write_text  # noqa: E402
from speechunits.sylber.segment import greedy_segment, greedy_segment_batch  # noqa: E402
from speechunits.sylber.segment_reference import greedy_segment_reference  # noqa: E402
from speechunits.sylber.thresholds import DEFAULT_MERGE_THRESHOLD, DEFAULT_NORM_THRESHOLD  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "segment_speed.md"
EXTRACT_HINT = (
    "extract the public reference first, e.g.\n"
    "  mkdir -p /tmp/sylber_ref && git --git-dir=<mirror of Berkeley-Speech-Group/sylber> "
    "show HEAD:sylber/utils/segment_utils.py > /tmp/sylber_ref/segment_utils.py\n"
    "(or download sylber/utils/segment_utils.py from github.com/Berkeley-Speech-Group/sylber)"
)


def load_reference(path: Path) -> Callable[..., np.ndarray]:
    """The reference's ``get_segment`` from a file outside the repository (imported by path)."""
    if not path.is_file():
        raise SystemExit(f"--reference {path}: file not found; {EXTRACT_HINT}")
    spec = importlib.util.spec_from_file_location("sylber_reference_segment_utils", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--reference {path}: cannot be imported as a Python module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "get_segment", None)
    if fn is None:
        raise SystemExit(f"--reference {path}: has no get_segment function; {EXTRACT_HINT}")
    return fn


def load_average() -> str:
    """1/5/15-minute load averages (how busy the shared machine was), or 'n/a'."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def as_rows(segments: object) -> np.ndarray:
    """(N, 2) int64 view of any segment list (the reference returns an empty 1-D array for none)."""
    return np.asarray(segments, dtype=np.int64).reshape(-1, 2)


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


@numba.njit(fastmath=True, nogil=True)
def one_pass(x: np.ndarray) -> float:  # pragma: no cover - compiled
    """Sum of every element: the cost of reading the frames once (the physical limit)."""
    acc = np.float32(0.0)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            acc += x[i, k]
    return float(acc)


@numba.njit(fastmath=True, parallel=True)
def one_pass_parallel(x: np.ndarray, offsets: np.ndarray) -> float:  # pragma: no cover - compiled
    """:func:`one_pass` over the utterances ``x[offsets[u]:offsets[u+1]]`` in parallel: what
    the machine's cores and memory allow a batch at best (the scaling control)."""
    n = offsets.shape[0] - 1
    sums = np.zeros(n, np.float32)
    for u in numba.prange(n):
        acc = np.float32(0.0)
        for i in range(offsets[u], offsets[u + 1]):
            for k in range(x.shape[1]):
                acc += x[i, k]
        sums[u] = acc
    return float(sums.sum())


def interleaved(fns: dict[str, Callable[[], object]], repeats: dict[str, int],
                cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Median seconds of each function, calls interleaved (a, b, c, a, b, c, ...) so that load
    from other processes hits every candidate alike; ``repeats[name]`` calls of each. ``cpu``,
    when given, receives the median process CPU seconds of each (all threads together)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(max(repeats.values())):
        for name, fn in fns.items():
            if r < repeats[name]:
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def bench_lengths(sizes: list[int], dim: int, rng: np.random.Generator, get_segment: Callable, oracle_max: int,
                  nt: float, mt: float) -> list[str]:
    rows = [
        "| T (frames) | segments | method | ns/frame | speed-up vs reference | identical to reference | identical to oracle |",
        "|---:|---:|---|---:|---:|:---:|:---:|",
    ]
    for n in sizes:
        x = synthetic_features(n, dim, rng)
        fns: dict[str, Callable[[], object]] = {
            "reference `get_segment` (public, numpy float32)": lambda: get_segment(x, nt, mt),
            "**default** (float64 accumulators)": lambda: greedy_segment(x, nt, mt),
            "`precision=\"float32\"`": lambda: greedy_segment(x, nt, mt, precision="float32"),
            "physical limit: one float32 pass (numba sum)": lambda: one_pass(x),
        }
        if n <= oracle_max:
            fns["bit-exact numpy oracle (`segment_reference.py`)"] = lambda: greedy_segment_reference(x, nt, mt)
        slow = n > 8000
        reps = {k: (3 if slow else 5) if ("reference" in k or "oracle" in k) else (7 if slow else 11) for k in fns}
        outs = {k: as_rows(fn()) for k, fn in fns.items() if "physical" not in k}
        t = interleaved(fns, reps)
        ref_name = next(iter(fns))
        oracle = outs.get("bit-exact numpy oracle (`segment_reference.py`)")
        for name in fns:
            seg = outs.get(name)
            same_ref = "" if seg is None else ("yes" if np.array_equal(seg, outs[ref_name]) else "NO")
            same_or = "" if seg is None or oracle is None else ("yes" if np.array_equal(seg, oracle) else "NO")
            nsegs = "" if seg is None else str(len(seg))
            rows.append(f"| {n} | {nsegs} | {name} | {t[name] / n * 1e9:,.0f} | {t[ref_name] / t[name]:.1f}x | "
                        f"{same_ref} | {same_or} |")
            print(rows[-1], flush=True)
    return rows


def bench_batch(num_utts: int, min_len: int, max_len: int, dim: int, rng: np.random.Generator, nt: float, mt: float,
                max_threads: int) -> list[str]:
    lengths = rng.integers(min_len, max_len + 1, size=num_utts).astype(np.int64)
    flat = synthetic_features(int(lengths.sum()), dim, rng)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    utts = [flat[offsets[i] : offsets[i + 1]] for i in range(num_utts)]
    total = int(lengths.sum())
    threads = list(range(1, max_threads + 1))
    before = numba.get_num_threads()

    def run_with(k: int) -> Callable[[], object]:
        def fn() -> object:
            numba.set_num_threads(k)
            return greedy_segment_batch(flat, lengths, nt, mt)
        return fn

    def control(k: int) -> Callable[[], object]:
        def fn() -> object:
            numba.set_num_threads(k)
            return one_pass_parallel(flat, offsets)
        return fn

    fns = {f"`greedy_segment_batch`, {k} thread{'s' if k > 1 else ''}": run_with(k) for k in threads}
    fns["Python loop of `greedy_segment` (1 thread)"] = lambda: [greedy_segment(u, nt, mt) for u in utts]
    fns.update({f"control: one parallel float32 pass (numba sum), {k} thread{'s' if k > 1 else ''}": control(k)
                for k in threads})
    try:
        batch = run_with(max_threads)()
        same = all(np.array_equal(a, greedy_segment(u, nt, mt)) for a, u in zip(batch, utts))
        cpu: dict[str, float] = {}
        t = interleaved(fns, {k: 11 for k in fns}, cpu)
    finally:
        numba.set_num_threads(before)
    rows = [
        f"{num_utts} utterances, {total:,} frames (lengths {min_len}-{max_len}), d={dim}, one `greedy_segment_batch` "
        f"call on the flat layout; batch == per-utterance `greedy_segment`: {'yes' if same else 'NO'}",
        "",
        "| method | seconds | CPU seconds (all threads) | frames/s | ns/frame | speed-up vs the same at 1 thread |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, sec in t.items():
        base = t[name.rsplit(", ", 1)[0] + ", 1 thread"] if name.endswith("threads") else sec
        rows.append(f"| {name} | {sec:.3f} | {cpu[name]:.3f} | {total / sec:,.0f} | {sec / total * 1e9:,.0f} | "
                    f"{base / sec:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def boundary_f1(pred: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """Corpus boundary F1 of ``pred`` against ``ref`` segments, counting only the same frame as
    a hit (``speechunits.eval.boundaries`` with a tolerance under half a frame)."""
    rate = 50.0  # any frame rate: boundaries are compared in frames
    as_times = {str(i): segment_boundaries(s, rate) for i, s in enumerate(pred)}
    ref_times = {str(i): segment_boundaries(s, rate) for i, s in enumerate(ref)}
    return evaluate_boundaries(as_times, ref_times, tolerance=0.4 / rate).f1


def encode_features(model: str, audio_dir: Path) -> tuple[list[np.ndarray], float, float, str]:
    """Last-layer features of every audio file under ``audio_dir`` (files that fail to load are
    skipped) from a checkpoint, or from a randomly initialised 768-d encoder for ``random``."""
    import torch

    from speechunits.encoders.model import EncoderConfig, SpeechEncoder
    from speechunits.sylber.segmenter import Segmenter

    torch.manual_seed(0)
    seg = Segmenter(SpeechEncoder(EncoderConfig()) if model == "random" else model, device="cpu")
    exts = {".wav", ".flac", ".mp3", ".ogg", ".opus"}
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in exts)
    feats = []
    for f in files:
        try:
            _, states = seg.encode_many([f])
        except Exception as e:  # noqa: BLE001 - a broken test file is skipped, and reported
            print(f"  skipped {f.name}: {type(e).__name__}: {str(e)[:80]}", flush=True)
            continue
        if states[0].shape[0]:
            feats.append(states[0])
    label = "randomly initialised `SpeechEncoder(EncoderConfig())`" if model == "random" else f"`{model}`"
    return feats, float(seg.norm_threshold), float(seg.merge_threshold), label


def bench_agreement(models: list[str], audio_dir: Path, get_segment: Callable) -> list[str]:
    rows = [
        "| features | d | utterances / frames | norm_threshold | merge_threshold | precision | identical to oracle "
        "| boundary F1 vs oracle (same frame) | identical to reference |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for model in models:
        feats, nt, mt, label = encode_features(model, audio_dir)
        if not feats:
            raise SystemExit(f"--agree-audio {audio_dir}: no audio file could be encoded")
        frames = sum(len(f) for f in feats)
        # the model's thresholds, other merge thresholds, and a norm threshold inside the norm
        # distribution (its 30th percentile): near-ties there test the speech mask's rounding
        q30 = float(np.percentile(np.concatenate([np.linalg.norm(f, axis=1) for f in feats]), 30))
        for n_t, m in [(nt, m) for m in sorted({mt, 0.5, 0.9})] + [(q30, mt)]:
            oracle = [greedy_segment_reference(f, n_t, m) for f in feats]
            ref = [as_rows(get_segment(f, n_t, m)) for f in feats]
            for precision in ("float64", "float32"):
                got = [greedy_segment(f, n_t, m, precision=precision) for f in feats]
                same = sum(np.array_equal(a, b) for a, b in zip(got, oracle))
                f1 = boundary_f1(got, oracle)
                same_ref = sum(np.array_equal(a, b) for a, b in zip(got, ref))
                rows.append(f"| {label} | {feats[0].shape[1]} | {len(feats)} / {frames:,} | {n_t:.6g} | {m:.3g} | "
                            f"{precision} | {same}/{len(feats)} | {f1:.5f} | {same_ref}/{len(feats)} |")
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog=EXTRACT_HINT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True,
                   help="path of the public reference's sylber/utils/segment_utils.py (outside this repository)")
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    p.add_argument("--oracle-max", type=int, default=32000, help="time the numpy oracle only up to this T")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--utts", type=int, default=1000)
    p.add_argument("--min-len", type=int, default=200)
    p.add_argument("--max-len", type=int, default=800)
    p.add_argument("--threads", type=int, default=2, help="batch scaling from 1 to this many numba threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agree-model", action="append", default=[],
                   help="checkpoint for the real-feature agreement table (repeatable); 'random' = a randomly "
                        "initialised 768-d encoder")
    p.add_argument("--agree-audio", type=Path, help="directory of audio files for --agree-model")
    p.add_argument("--quick", action="store_true", help="T = 2000 only, 100 utterances")
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown file for the table")
    args = p.parse_args(argv)
    if args.agree_model and args.agree_audio is None:
        p.error("--agree-model needs --agree-audio")
    if args.quick:
        args.sizes, args.utts = [2000], 100
    get_segment = load_reference(args.reference)
    rng = np.random.default_rng(args.seed)
    nt, mt = DEFAULT_NORM_THRESHOLD, DEFAULT_MERGE_THRESHOLD

    t0 = time.perf_counter()
    warm = synthetic_features(300, args.dim, rng)
    for precision in ("float64", "float32"):
        greedy_segment(warm, precision=precision)
    greedy_segment_batch([warm, warm])
    one_pass(warm)
    one_pass_parallel(warm, np.array([0, 300]))
    jit_s = time.perf_counter() - t0
    header = [
        "# Greedy segmentation speed (`benchmarks/segment_speed.py`)",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs visible; numba {numba.__version__} "
        f"(threading layer {numba.threading_layer()}); numpy {np.__version__}",
        f"- d = {args.dim}; thresholds {nt} / {mt}; JIT warm-up / cache load: {jit_s:.2f} s; seed {args.seed}",
        f"- reference: `get_segment` from `{args.reference}` (the public Sylber code, run on float32 numpy arrays); "
        "oracle: `speechunits.sylber.segment_reference` (numpy, float64, bit-exact to the test fixtures)",
        "- candidates are timed in interleaved repeats (medians); ratios are within this run",
        f"- machine state: load average {load_average()} at the start (other processes share the cores: "
        "absolute times are noisy, and a thread count above the idle cores cannot scale; the batch control row "
        "shows what the machine allowed)",
        "",
        "## One utterance, growing T",
        "",
    ]
    print("\n".join(header), flush=True)
    rows = bench_lengths(args.sizes, args.dim, rng, get_segment, args.oracle_max, nt, mt)
    print("\n## Batch scaling\n", flush=True)
    batch_rows = bench_batch(args.utts, args.min_len, args.max_len, args.dim, rng, nt, mt, args.threads)
    text = header + rows + ["", "## Batch scaling", ""] + batch_rows
    if args.agree_model:
        print("\n## Agreement on real model features\n", flush=True)
        text += ["", "## Agreement on real model features", "", f"Audio: every file under `{args.agree_audio}` that "
                 "loads; thresholds: the model's, merge 0.5 / 0.9, and a norm threshold at the 30th percentile of the "
                 "frame norms.", ""]
        text += bench_agreement(args.agree_model, args.agree_audio, get_segment)
    text += ["", f"Load average at the end: {load_average()}."]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, "\n".join(text) + "\n")
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
