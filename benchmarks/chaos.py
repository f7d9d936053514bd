"""Benchmark: the chaos harness at N kills per long job (issue 17; docs/reliability.md).

For every job of ``tests/chaos/jobs.py`` (or those named with ``--jobs``): one uninterrupted
run, then trials of 1-3 SIGKILLs at seeded random points (half at kill points drawn stratum by
stratum, the final merge and renames included; half at a random time) each followed by a
resume, until ``--kills`` kills have happened; after each trial's last run the output tree must
equal the uninterrupted one (byte for byte; JSON without timestamps) with no temporary left.

Prints and writes (``--out``, default ``benchmarks/results/chaos.md``) the table: job, kills
(point / timer), resumes, trials, kill-point strata seen in the uninterrupted run and how many
were hit, mismatches, leftovers, failed runs, and the wall time of the uninterrupted run.

Usage::

    python benchmarks/chaos.py                         # N = 50 for every job (about an hour on 2 cores)
    python benchmarks/chaos.py --kills 5 --jobs tokenize,cluster
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "chaos"))
from harness import ChaosReport, run_chaos  # noqa: E402
from jobs import JOBS  # noqa: E402
from jobs_real import real_tokenize_job  # noqa: E402


def table(reports: list[ChaosReport], kills: int, seed: int) -> str:
    lines = [f"Chaos harness: {kills} kills per job, seed {seed} (`python benchmarks/chaos.py --kills {kills} "
             f"--seed {seed}`)", "",
             "| job | kills (point / timer) | resumes | trials | strata (hit / seen) | mismatches | leftovers "
             "| failed runs | uninterrupted run (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        timer = r.fired.get("timer", 0)
        hit = len([k for k in r.fired if k != "timer"])
        lines.append(f"| {r.job} | {r.kills} ({r.kills - timer} / {timer}) | {r.resumes} | {r.trials} | "
                     f"{hit} / {r.strata} | {len(r.mismatches)} | {len(r.leftovers)} | {len(r.errors)} | "
                     f"{r.reference_seconds:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="kills per job (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", default=",".join(sorted(JOBS)), help="comma-separated job names (default: all)")
    parser.add_argument("--real-audio", type=Path, default=None, metavar="DIR",
                        help="also run tokenize-real: tokenize over the first 8 real recordings under DIR")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "chaos.md")
    args = parser.parse_args()
    names = [n for n in args.jobs.split(",") if n]
    jobs = dict(JOBS)
    if args.real_audio is not None:
        jobs["tokenize-real"] = real_tokenize_job(args.real_audio)
        names.append("tokenize-real")
    unknown = [n for n in names if n not in jobs]
    if unknown:
        parser.error(f"unknown job(s) {unknown}; known: {sorted(JOBS)}")
    reports = []
    with tempfile.TemporaryDirectory(prefix="chaos-", dir=args.work) as scratch:
        for name in names:
            job, start = jobs[name], time.perf_counter()
            inputs = Path(scratch) / name / "inputs"
            inputs.mkdir(parents=True)
            job.build(inputs)
            report = run_chaos(job, inputs, Path(scratch) / name / "work", kills=args.kills, seed=args.seed)
            reports.append(report)
            print(report.summary(), f"({time.perf_counter() - start:.0f} s)", flush=True)
            print("  kills fired at:", dict(sorted(report.fired.items())), flush=True)
    text = table(reports, args.kills, args.seed)
    print(text)
    if set(JOBS) <= set(names) or args.out != parser.get_default("out"):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
