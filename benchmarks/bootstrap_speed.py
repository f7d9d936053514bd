"""Speed of the acoustic bootstrap segmenter: seconds of audio segmented per second.

    .venv/bin/python benchmarks/bootstrap_speed.py [--minutes 10]

Measures the full segmenter on a long synthetic syllable-like signal at several lengths
(to show the cost is linear in the input) and prints a real-time-factor table; the
baseline column is the cost of just reading the same audio's band energy with numpy
(the segmenter's unavoidable first step), measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from speechunits.sylber.bootstrap import SAMPLE_RATE, BootstrapConfig, bootstrap_segments, frame_power


def syllable_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced bursts (100-300 ms, random F0) separated by short gaps, with a little noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    t = 0
    while t < len(out):
        n = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
        f0 = rng.uniform(90, 250)
        idx = np.arange(min(n, len(out) - t))
        env = np.sin(np.pi * idx / max(1, n)) ** 2
        out[t:t + len(idx)] = 0.3 * env * np.sign(np.sin(2 * np.pi * f0 * idx / SAMPLE_RATE))
        t += n + int(rng.uniform(0.02, 0.12) * SAMPLE_RATE)
    return out + 0.003 * rng.standard_normal(len(out)).astype(np.float32)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    wave = syllable_like(args.minutes * 60)
    config = BootstrapConfig()
    print("| audio (s) | segmenter (s) | RTF | x real time | band energy only (s) | segmenter / energy | tokens/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for frac in (0.1, 0.25, 0.5, 1.0):
        w = wave[: int(len(wave) * frac)]
        secs = len(w) / SAMPLE_RATE
        t_seg = best_of(lambda: bootstrap_segments(w, SAMPLE_RATE, config))
        t_pow = best_of(lambda: frame_power(w, config))
        n = len(bootstrap_segments(w, SAMPLE_RATE, config))
        print(f"| {secs:.0f} | {t_seg:.3f} | {t_seg / secs:.5f} | {secs / t_seg:.0f} | {t_pow:.3f} | "
              f"{t_seg / t_pow:.2f} | {n / secs:.2f} |")


if __name__ == "__main__":
    main()
