"""Speed of the vocoder generators: real-time factor of HiFi-GAN V1, V3 and the iSTFT generator.

Run from the repository root::

    .venv/bin/python benchmarks/vocoder_speed.py                 # 10 s of conditioning, 5 runs each
    .venv/bin/python benchmarks/vocoder_speed.py --quick --output /tmp/vocoder_speed.md   # smoke test
    .venv/bin/python benchmarks/vocoder_speed.py --bf16          # adds bf16-autocast rows on CUDA

Each generator is built by ``speechunits.vocoder.generators.build_generator`` with its default
(paper-sized) hyperparameters and 80 input channels, randomly initialised, weight norm removed,
``eval()``, under ``torch.inference_mode()``. Input: ``--seconds`` of random conditioning
(``seconds * sample_rate // hop`` frames, batch 1) at 22050 Hz / hop 256 and 16000 Hz / hop 160.
Timing: ``time.perf_counter`` around one forward, one warm-up call first, median of ``--repeats``;
on CUDA with ``torch.cuda.synchronize()`` before and after. CPU runs use ``--threads`` torch
threads (default: all visible cores). All rows are measured in one run.

Real-time factor (RTF) = seconds of compute per second of audio; real time is RTF = 1.0 (the
physical limit for streaming synthesis); "x real time" = 1 / RTF. There is no public reference
number for this benchmark, so the ratio column compares the generators measured in the same
run (speed-up = HiFi-GAN V1's time / this generator's time, same rate, device and dtype). The table is printed and
written to ``benchmarks/results/vocoder_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechunits.io_utils import atomic_write_text  # noqa: E402
from speechunits.vocoder.generators import build_generator, count_parameters  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "vocoder_speed.md"
GENERATOR_NAMES = ("hifigan_v1", "hifigan_v3", "istft")
SETTINGS = ((22050, 256), (16000, 160))
N_MELS = 80


def time_generator(gen: torch.nn.Module, cond: torch.Tensor, device: torch.device, bf16: bool,
                   repeats: int) -> float:
    """Median seconds of one forward pass over ``cond`` (after one warm-up call)."""
    cuda = device.type == "cuda"

    def once() -> float:
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = gen(cond)
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        assert y.shape[-1] == cond.shape[-1] * gen.hop_length
        return elapsed

    with torch.inference_mode():
        once()
        return statistics.median(once() for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds of conditioning per call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (median)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    p.add_argument("--generators", nargs="+", default=list(GENERATOR_NAMES))
    p.add_argument("--no-cuda", action="store_true", help="CPU rows only, even when CUDA is available")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast on CUDA")
    p.add_argument("--quick", action="store_true", help="2 s of conditioning, 3 repeats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown file for the table")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 2.0, 3
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))

    header = ("| generator | rate / hop | device | dtype | params (M) | seconds per call | RTF (s compute / s audio) "
              "| x real time | speed-up vs first |")
    rows = [header, "|---|---|---|---|---:|---:|---:|---:|---:|"]
    print(header, flush=True)
    params: dict[str, int] = {}
    for sample_rate, hop in SETTINGS:
        frames = int(args.seconds * sample_rate) // hop
        audio_seconds = frames * hop / sample_rate
        for device in devices:
            dtypes = [False, True] if device.type == "cuda" and args.bf16 else [False]
            for bf16 in dtypes:
                baseline: float | None = None
                for name in args.generators:
                    torch.manual_seed(args.seed)
                    gen = build_generator(name, N_MELS, hop)
                    n_params = count_parameters(gen)
                    params.setdefault(f"{name} (hop {hop})", n_params)
                    gen.remove_weight_norm()
                    gen = gen.eval().to(device)
                    cond = torch.randn(1, N_MELS, frames, generator=torch.Generator().manual_seed(args.seed)).to(device)
                    secs = time_generator(gen, cond, device, bf16, args.repeats)
                    rtf = secs / audio_seconds
                    if baseline is None:
                        baseline = secs
                    speedup = baseline / secs
                    row = (f"| {name} | {sample_rate} / {hop} | {device.type} | {'bf16' if bf16 else 'fp32'} | "
                           f"{n_params / 1e6:.2f} | {secs:.3f} | {rtf:.4f} | {1 / rtf:,.1f} | "
                           f"{speedup:.1f}x |")
                    rows.append(row)
                    print(row, flush=True)
                    del gen, cond
    gpu = f", {torch.cuda.get_device_name(0)}" if len(devices) > 1 else ""
    text = "\n".join([
        "# Vocoder generator speed (real-time factor)",
        "",
        f"{args.seconds:g} s of random 80-channel conditioning per call, batch 1, weight norm removed, eval, "
        f"inference_mode; median of {args.repeats} calls after one warm-up; CPU with {args.threads} torch threads "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} visible cores{gpu}); torch {torch.__version__}.",
        "RTF = seconds of compute per second of audio; **real time is RTF = 1.0** (below: faster than real time); "
        "x real time = 1 / RTF. Ratios compare generators measured in this run (speed-up = time of the first "
        "generator listed, HiFi-GAN V1 by default, / time of this one, at the same rate, device and dtype). No public reference "
        "figure exists for this setup. On a shared machine absolute times are noisy; compare ratios.",
        "",
        *rows,
        "",
        "Trainable parameters with weight norm (as trained), 80 input channels: "
        + ", ".join(f"{k}: {v / 1e6:.3f} M" for k, v in params.items())
        + ". Paper (Kong et al. 2020, 22.05 kHz, hop 256): V1 13.92 M, V3 1.46 M.",
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
