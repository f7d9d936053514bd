"""A training that outlives its Slurm time limit: checkpoint, requeue, resume, until it finishes.

Starts the one-node test cluster of ``tests/slurm_cluster.py`` (needs the slurm-wlm and munge
packages and root), then runs the slow toy task twice:

* uninterrupted, as one local process (the reference);
* through ``speechunits launch --cmd "slurm --time MINUTES" --grace SECONDS``: Slurm signals the
  batch shell GRACE seconds before each time limit, the training checkpoints and the job
  requeues itself, again and again, until the last start finishes.

Prints one row per start (when it began, when the signal came, the step it checkpointed or
finished at) and whether the final weights equal the reference's bit for bit. The limit
measured against is Slurm's own: a requeued batch job waits about 2 minutes before it is
eligible, and slurmctld checks time limits on its own timer, so a signal comes up to tens of
seconds after the requested moment.

    sudo .venv/bin/python benchmarks/slurm_time_limit.py [--steps 600] [--step-sleep 0.15] [--time 1] [--grace 40]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from slurm_cluster import SlurmCluster, missing  # noqa: E402

START = re.compile(r"^# (\S+) Slurm job \d+, start (\d+),")
SIGNAL = re.compile(r"^# (\S+) SIGUSR1")
STOPPED = re.compile(r"^received SIGTERM at step (\d+):")
RESUMED = re.compile(r"^resuming from \S+ \(step (\d+)\)")


def toy(out: Path, args: argparse.Namespace) -> list[str]:
    return ["--module", "speechunits.train.toy", "--", f"out_dir={out}", "progress=false", f"max_steps={args.steps}",
            "save_every=1000000", "log_every=50", f"task.step_sleep={args.step_sleep}", "resume=auto", "--device", "cpu",
            "--dump-weights", str(out / "weights")]


def starts(log: str) -> list[dict[str, str]]:
    """One dict per start of the job, from its log: began, resumed_at, signal, stopped_at."""
    rows: list[dict[str, str]] = []
    for line in log.splitlines():
        if m := START.match(line):
            rows.append({"start": m.group(2), "began": m.group(1), "resumed_at": "0", "signal": "", "stopped_at": ""})
        elif rows and (m := RESUMED.match(line)):
            rows[-1]["resumed_at"] = m.group(1)
        elif rows and (m := SIGNAL.match(line)):
            rows[-1]["signal"] = m.group(1)
        elif rows and (m := STOPPED.match(line)):
            rows[-1]["stopped_at"] = m.group(1)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--step-sleep", type=float, default=0.15, help="seconds each toy step sleeps")
    parser.add_argument("--time", default="1", help="the job's --time (Slurm syntax; minutes)")
    parser.add_argument("--grace", type=int, default=40, help="launch --grace: seconds before the limit")
    args = parser.parse_args()
    if missing():
        print(f"needs {', '.join(missing())}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="slurm-time-limit-"))
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="speechunits-slurm-")))
    cluster.start()
    try:
        env = {**cluster.env(), "SPEECHUNITS_SLURM_POLL": "5"}
        launch = [sys.executable, "-m", "speechunits", "launch"]
        t0 = time.perf_counter()
        subprocess.run([*launch, *toy(work / "reference", args)], env=env, check=True, capture_output=True)
        reference_s = time.perf_counter() - t0
        log = work / "log" / "train.slurm.log"
        t0 = time.perf_counter()
        r = subprocess.run([*launch, "--cmd", f"slurm --time {args.time}", "--grace", str(args.grace), "--log", str(log),
                            *toy(work / "slurm", args)], env=env, capture_output=True, text=True)
        slurm_s = time.perf_counter() - t0
        a = torch.load(work / "slurm" / "weights" / "weights_rank0.pt", weights_only=True) if r.returncode == 0 else {}
        b = torch.load(work / "reference" / "weights" / "weights_rank0.pt", weights_only=True)
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        rows = starts(log.read_text())
    finally:
        cluster.stop()
    print(f"# {args.steps} toy steps of {args.step_sleep} s; sbatch --time {args.time} --signal=B:USR1@{args.grace}\n")
    print("| start | began (UTC) | resumed at step | SIGUSR1 (UTC) | checkpointed at step |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['start']} | {row['began']} | {row['resumed_at']} | {row['signal'] or '-'} | "
              f"{row['stopped_at'] or 'finished'} |")
    print(f"\nlaunch exit status {r.returncode}; {len(rows)} start(s), {len(rows) - 1} requeue(s); wall {slurm_s:.0f} s "
          f"(uninterrupted local run {reference_s:.0f} s); final weights bitwise equal to the uninterrupted run: {same}")
    print(f"(work directory {work}; remove it when done)")
    return 0 if r.returncode == 0 and same else 1


if __name__ == "__main__":
    sys.exit(main())
