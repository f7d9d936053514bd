"""``speechunits launch``: start a training command here, under torchrun, or as a Slurm job.

Recipes start every training through this one command, so that ``--cmd``, ``--ngpu`` and
``--nnodes`` mean the same everywhere::

    speechunits launch --ngpu 4 -- train-sylber --config conf/x.yaml --out-dir exp/x --resume auto
    speechunits launch --cmd "slurm --time 48:00:00" --ngpu 8 --nnodes 4 --log exp/x/log/train.slurm.log \\
        -- train-sylber --config conf/x.yaml --out-dir exp/x --resume auto

* **local** (one node): one process when ``--nproc-per-node`` (default ``max(--ngpu, 1)``) is 1,
  else ``torchrun --standalone --nproc-per-node P``. Inside a Slurm allocation (``salloc``,
  or a batch script of your own), ``--nnodes M > 1`` runs the multi-node line below directly.
* **slurm**: one ``sbatch`` job of ``--nnodes`` nodes (``num_nodes`` and ``gpu`` options of
  ``conf/slurm.conf``; one task per node), with ``--requeue`` and ``--signal=B:USR1@GRACE``.
  Its script (``LOG`` with suffix ``.sh``) runs::

      srun --kill-on-bad-exit=1 torchrun --nnodes M --nproc-per-node P --rdzv-backend c10d \\
          --rdzv-endpoint HEAD:PORT --rdzv-id $SLURM_JOB_ID -m speechunits ARGS...

  HEAD is the first node of the allocation and PORT ``$MASTER_PORT`` or ``20000 + job id mod
  20000``. One process per node (``M`` = ``P`` = 1) runs without torchrun.
  **Time limit**: GRACE seconds before it, Slurm sends the batch shell SIGUSR1; the script
  passes SIGTERM to the training processes, which checkpoint at the next step and exit
  (:mod:`speechunits.train.loop`), then requeues the job, whose next start resumes from that
  checkpoint (the training command must say ``--resume auto``). ``scancel`` and preemption
  send SIGTERM: the training checkpoints the same way; a cancelled job stays cancelled and
  the same ``launch`` command resumes it. This command waits for the job through requeues,
  prints how it ended with the log's tail, and exits 0 only when it completed; a rerun while
  the job still runs waits for it (``LOG`` with suffix ``.json`` holds its id) instead of
  starting a second writer of the same run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.launchers import SlurmLauncher, log_tail, make_launcher
from speechunits.slurm import (JobRecord, SlurmConfig, cancelled_on_interrupt, earlier_job, live_tasks, submit,
                               wait_for_job)

REQUEUE_SETTLE = 2.0
"""Seconds to look again at a job that ended, in case it was requeued as it ended."""
DEFAULT_GRACE = 120
"""Seconds before the time limit at which Slurm signals the job to checkpoint and requeue."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--cmd", default="local", help="'local' (default) or 'slurm [--time T --mem M --num-threads N "
                                                      "--config conf/slurm.conf]' (see docs/cluster.md)")
    parser.add_argument("--ngpu", type=int, default=None,
                        help="GPUs per node (default: the --cmd's --gpu, else 0); also the processes per node")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes (default 1); > 1 needs Slurm")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="training processes per node (default max(--ngpu, 1); e.g. 2 for DDP on CPU)")
    parser.add_argument("--log", type=Path, help="the Slurm job's output file (required with --cmd slurm)")
    parser.add_argument("--module", default="speechunits", help="python module run with ARGS (default speechunits)")
    parser.add_argument("--grace", type=int, default=DEFAULT_GRACE,
                        help=f"seconds before the time limit to checkpoint and requeue (default {DEFAULT_GRACE})")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the training command, after '--' (e.g. -- train-sylber --config x.yaml --resume auto)")


def worker_command(module: str, args: list[str], nnodes: int, nproc: int, *, standalone: bool) -> list[str]:
    """The command one node runs: ``python -m MODULE ARGS``, or torchrun with it.

    ``standalone``: one node, torchrun picks its own rendezvous; else c10d rendezvous at
    ``$head:$port`` with the Slurm job id (shell words the batch script expands).
    """
    if nnodes == 1 and nproc == 1:
        return [sys.executable, "-m", module, *args]
    run = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc)]
    if standalone:
        run.append("--standalone")
    else:
        run += ["--rdzv-backend", "c10d", "--rdzv-endpoint", "$head:$port", "--rdzv-id", "$SLURM_JOB_ID"]
    return [*run, "-m", module, *args]


RENDEZVOUS_SH = ('head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
                 'port=${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 20000 ))}\n')
"""Bash that sets ``$head`` (the allocation's first node) and ``$port`` for the c10d rendezvous: the
address and port :func:`speechunits.train.distributed.slurm_rendezvous` gives a bare srun task."""


def _shell(argv: list[str]) -> str:
    """``argv`` quoted for bash, except the ``$head:$port`` and ``$SLURM_JOB_ID`` words, left to expand."""
    return " ".join(f'"{w}"' if w in ("$head:$port", "$SLURM_JOB_ID") else shlex.quote(w) for w in argv)


def batch_script(step: list[str], header: str) -> str:
    """The job script: rendezvous address, the SIGUSR1 -> checkpoint -> requeue trap, ``srun STEP``."""
    return f"""#!/bin/bash
# {header}
# written by speechunits launch (speechunits/train/cluster.py); see docs/cluster.md
{RENDEZVOUS_SH}echo "# $(date -u +%FT%TZ) Slurm job $SLURM_JOB_ID, start ${{SLURM_RESTART_COUNT:-0}}, nodes $SLURM_JOB_NODELIST, rendezvous $head:$port"
requeue=0
on_time_limit() {{
  requeue=1
  echo "# $(date -u +%FT%TZ) SIGUSR1 (time limit near): the training checkpoints at its next step and stops"
  scancel --signal=TERM "$SLURM_JOB_ID"
}}
trap on_time_limit USR1
srun --kill-on-bad-exit=1 {_shell(step)} &
step=$!
while :; do
  wait "$step"; rc=$?
  kill -0 "$step" 2>/dev/null || break  # wait returned for the trap, not for the step's end
done
if (( requeue )); then
  echo "# $(date -u +%FT%TZ) requeueing job $SLURM_JOB_ID: its next start resumes from the checkpoint"
  # the requeue ends this script; it must not end first, or the job is seen failed before it is requeued
  scontrol requeue "$SLURM_JOB_ID" && sleep 600
fi
exit "$rc"
"""


def _paths(log: Path) -> tuple[Path, Path]:
    """The job script and the job record beside the log: ``LOG`` with suffixes ``.sh`` and ``.json``."""
    return log.with_suffix(".sh"), log.with_suffix(".json")


def _run_local(args: argparse.Namespace, nproc: int) -> int:
    if args.nnodes > 1:
        if not os.environ.get("SLURM_JOB_ID"):
            raise ConfigError(None, f"--nnodes {args.nnodes} needs Slurm: --cmd slurm, or run inside an allocation "
                                    f"of {args.nnodes} nodes (salloc / sbatch)")
        step = worker_command(args.module, args.args, args.nnodes, nproc, standalone=False)
        script = f"{RENDEZVOUS_SH}exec srun --kill-on-bad-exit=1 --nodes {args.nnodes} --ntasks-per-node 1 {_shell(step)}"
        argv = ["bash", "-c", script]
    else:
        argv = worker_command(args.module, args.args, 1, nproc, standalone=True)
    print(f"launch: {shlex.join(argv)}", file=sys.stderr, flush=True)
    return subprocess.call(argv)


def _run_slurm(args: argparse.Namespace, options: dict[str, str], config: SlurmConfig, nproc: int) -> int:
    if args.log is None:
        raise ConfigError(None, "--cmd slurm needs --log FILE (the job's output)")
    log: Path = args.log.resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    script, record = _paths(log)
    found = earlier_job(record)
    if found is not None:
        job_id = found[0].job_id
        print(f"launch: Slurm job {job_id} of an earlier launch is still queued or running; waiting for it instead "
              f"of submitting again (log {log})", file=sys.stderr)
    else:
        step = worker_command(args.module, args.args, args.nnodes, nproc, standalone=False)
        atomic_write_text(script, batch_script(step, f"speechunits launch: {shlex.join([args.module, *args.args])}"))
        script.chmod(0o755)
        name = args.args[0] if args.module == "speechunits" else args.module.rsplit(".", 1)[-1]  # train-sylber, toy
        sbatch = [*config.flags(options), "--requeue", f"--signal=B:USR1@{args.grace}", f"--job-name=speechunits-{name}",
                  f"--output={log}", "--open-mode=append", f"--chdir={Path.cwd()}"]
        job_id = submit(sbatch, script)
        JobRecord(job_id, [None], str(script)).write(record)
        print(f"launch: submitted Slurm job {job_id}: {shlex.join(sbatch)} {script}; log {log}", file=sys.stderr)
    with cancelled_on_interrupt(job_id, "launch"):
        while True:
            end = wait_for_job(job_id, [None])[None]
            time.sleep(REQUEUE_SETTLE)  # a job requeued as it ended (by itself, or on a node failure) is pending again
            if not live_tasks(job_id, [None]):
                break
            print(f"launch: Slurm job {job_id} was requeued ({end.describe()}); waiting for it", file=sys.stderr)
    if end.ok:
        print(f"launch: Slurm job {job_id} completed; log {log}", file=sys.stderr)
        return 0
    print(f"launch: Slurm job {job_id} did not complete ({end.describe()}); see {log}\n{log_tail(log)}\n"
          "launch: run the same command again to resume from the last checkpoint", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    if args.args and args.args[0] == "--":
        args.args = args.args[1:]
    if not args.args:
        raise ConfigError(None, "launch: no training command given (e.g. -- train-sylber --config x.yaml)")
    launcher = make_launcher(args.cmd)  # an unknown launcher, 'local' with options, an undefined option: errors
    options = dict(launcher.spec.options) if isinstance(launcher, SlurmLauncher) else {}
    if "num_nodes" in options:
        raise ConfigError(None, f"--cmd {args.cmd!r}: give the number of nodes with --nnodes, not in --cmd")
    ngpu = args.ngpu if args.ngpu is not None else int(options.get("gpu", 0))
    if "gpu" in options and int(options["gpu"]) != ngpu:
        raise ConfigError(None, f"--cmd {args.cmd!r} asks for {options['gpu']} GPU(s) but --ngpu is {ngpu}")
    nproc = args.nproc_per_node or max(ngpu, 1)
    if ngpu < 0 or args.nnodes < 1 or nproc < 1:
        raise ConfigError(None, f"need --ngpu >= 0, --nnodes >= 1, --nproc-per-node >= 1; got {ngpu}, {args.nnodes}, "
                                f"{nproc}")
    if not isinstance(launcher, SlurmLauncher):
        return _run_local(args, nproc)
    options.update(gpu=str(ngpu), num_nodes=str(args.nnodes))
    return _run_slurm(args, options, launcher.config, nproc)
