"""The two data-pipeline backends on real recordings: decoding speed, and whether they give the same batches and units.

Run from the repository root on any folder of audio files (every file soundfile can open, in any
format, rate and channel count; files it cannot are reported by the pipeline, not here)::

    .venv/bin/python benchmarks/data_backends.py --audio-dir /tmp/mfa_wav/tests/data/wav \\
        [--model egs/synth/exp/sylber/stage2/model.tuned.pt] [--workers 0 1 2] [--repeats 3]

For each backend available here (fairseq2 only where it imports and matches the installed torch)
and each worker count it times one pass of :func:`speechunits.data.pipeline.build_audio_pipeline`
over the files (16 kHz, 60 s padded batches, ``max_padding`` 0.1; no model), median of
``--repeats``, as x real time. The baseline, in the same run, is one process decoding the files
one after another with :func:`speechunits.audio.load_audio` (the work every backend parallelises).
It then checks that the backends give identical batches (ids, samples, lengths) and the same
skipped files. With ``--model`` it also runs ``speechunits tokenize`` (CPU) once per backend and
compares the unit sets (``units.jsonl`` and ``bad_utts.txt`` byte for byte).
The table goes to stdout and ``--out`` (markdown).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from speechunits.audio import load_audio  # noqa: E402
from speechunits.data.jsonl import write_jsonl_manifest  # noqa: E402
from speechunits.data.pipeline import build_audio_pipeline, fairseq2_unusable  # noqa: E402
from speechunits.data.utterance import Utterance  # noqa: E402
from speechunits.errors import AudioError  # noqa: E402
from speechunits.io_utils import atomic_write_text  # noqa: E402

SR = 16000


def corpus(audio_dir: Path) -> list[Utterance]:
    """One utterance per file under ``audio_dir`` (sorted; ids made unique by their position)."""
    files = sorted(p for p in audio_dir.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"{audio_dir}: no files")
    return [Utterance(id=f"u{i:04d}_{p.stem}", audio=str(p)) for i, p in enumerate(files)]


def one_pass(utts: list[Utterance], backend: str, workers: int) -> tuple[float, float, list, list]:
    """(wall s, audio s, batches as (ids, waveforms, lengths), skipped (id, reason)) of one pipeline pass."""
    pipe = build_audio_pipeline(utts, sample_rate=SR, max_batch_seconds=60.0, num_parallel_calls=workers,
                                prefetch=2, max_padding=0.1, backend=backend)
    try:
        t0 = time.perf_counter()
        batches = [(b.ids, b.waveforms.numpy(), b.lengths.numpy()) for b in pipe]
        wall = time.perf_counter() - t0
        skipped = sorted((s.id, s.reason) for s in pipe.skipped)
    finally:
        pipe.close()
    return wall, sum(float(b[2].sum()) for b in batches) / SR, batches, skipped


def serial_decode(utts: list[Utterance]) -> tuple[float, float]:
    """(wall s, audio s) of decoding every file in turn in this process (bad files skipped)."""
    t0 = time.perf_counter()
    total = 0
    for u in utts:
        try:
            total += len(load_audio(u.audio, SR))
        except AudioError:
            pass
    return time.perf_counter() - t0, total / SR


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2])
                                    for x, y in zip(a, b))


def tokenize(manifest: Path, model: Path, out: Path, backend: str) -> tuple[float, bytes, bytes]:
    """(wall s, units.jsonl, bad_utts.txt) of one `speechunits tokenize` run on the CPU with ``backend``."""
    env = {**os.environ, "SPEECHUNITS_DATA_BACKEND": backend}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "speechunits", "tokenize", "--model", str(model), "--data",
                           str(manifest), "--out", str(out), "--device", "cpu", "--num-workers", "2"],
                          env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tokenize with the {backend} backend failed:\n{proc.stderr[-2000:]}")
    return wall, (out / "units.jsonl").read_bytes(), (out / "bad_utts.txt").read_bytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio-dir", type=Path, required=True, help="folder of audio files (searched recursively)")
    p.add_argument("--model", type=Path, default=None, help="a Sylber checkpoint: also compare tokenize's unit sets")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="decode worker counts to time")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = p.parse_args(argv)

    utts = corpus(args.audio_dir)
    why_not = fairseq2_unusable()
    backends = ["torch"] + ([] if why_not else ["fairseq2"])
    lines = [
        "# Data-pipeline backends on real recordings (`benchmarks/data_backends.py`)",
        "",
        f"Command: `python benchmarks/data_backends.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the start), "
        f"torch {torch.__version__}, Python {platform.python_version()}. fairseq2 backend: "
        + ("available" if not why_not else f"not available ({why_not})"),
        f"Files: {len(utts)} under {args.audio_dir}; 16 kHz, 60 s padded batches, max_padding 0.1; median of "
        f"{args.repeats} passes.",
        "",
        "| decoding | workers | x real time | vs serial decode | batches |",
        "|---|---:|---:|---:|---:|",
    ]
    serial = [serial_decode(utts) for _ in range(args.repeats)]
    serial_rt = statistics.median(a / w for w, a in serial)
    lines.append(f"| serial `load_audio`, one process (baseline) | 1 | {serial_rt:,.0f} | 1.00x | |")
    first: dict[str, tuple[list, list]] = {}
    for backend in backends:
        for workers in args.workers:
            runs = [one_pass(utts, backend, workers) for _ in range(args.repeats)]
            rt = statistics.median(a / w for w, a, _, _ in runs)
            first.setdefault(backend, (runs[0][2], runs[0][3]))
            lines.append(f"| `{backend}` backend | {workers} | {rt:,.0f} | {rt / serial_rt:.2f}x | {len(runs[0][2])} |")
            print(lines[-1], file=sys.stderr, flush=True)
    if len(first) == 2:
        (ba, sa), (bb, sb) = first["torch"], first["fairseq2"]
        lines += ["", f"Identical batches (ids, samples, lengths) between the backends: "
                      f"{'yes' if same_batches(ba, bb) else 'NO'}; identical skipped files: {'yes' if sa == sb else 'NO'} "
                      f"({len(sa)} skipped)."]
    skipped = next(iter(first.values()))[1]
    lines += ["", f"Files the pipeline reported ({len(skipped)}):"] + [f"- `{i}`: {r}" for i, r in skipped]
    if args.model is not None:
        with tempfile.TemporaryDirectory(prefix="data_backends_") as tmp:
            manifest = Path(tmp) / "data.jsonl"
            write_jsonl_manifest(utts, manifest)
            results = {b: tokenize(manifest, args.model, Path(tmp) / f"units_{b}", b) for b in backends}
        lines += ["", f"`speechunits tokenize` (CPU) with `{args.model}`:"]
        for b, (wall, units, bad) in results.items():
            written, reported = units.count(b"\n"), bad.count(b"\n")
            lines.append(f"- {b} backend: {wall:.1f} s wall, {written} utterances written, {reported} in bad_utts.txt")
        if len(results) == 2:
            same_units = results["torch"][1] == results["fairseq2"][1]
            same_bad = results["torch"][2] == results["fairseq2"][2]
            lines.append(f"- identical units.jsonl: {'yes' if same_units else 'NO'}; identical bad_utts.txt: "
                         f"{'yes' if same_bad else 'NO'}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
