"""How the shards of a corpus job run as separate jobs: ``--cmd local`` or ``--cmd slurm``.

A launcher gets the shard numbers to run, the command line of each (``python -m speechunits
VERB ... --job J``) and the log directory; it runs them, waits, and returns the ones that
failed, each with its exit status and log ``LOGDIR/VERB.J.log``. Resume and merge are the
runner's (:mod:`speechunits.jobs`): a rerun asks again only for the shards without a finished
record, whoever ran them.

* ``local`` (:class:`LocalLauncher`): every shard a subprocess on this machine, all started at
  once, each on ``cores // nj`` threads; an interrupt sends them SIGTERM.
* ``slurm`` (:class:`SlurmLauncher`): one ``sbatch --array=J1,J2,...`` job whose task J runs
  shard J (script ``LOGDIR/VERB.slurm.sh``, output ``LOGDIR/VERB.J.log``), flags from
  ``conf/slurm.conf`` (:mod:`speechunits.slurm`); ``--max-jobs-run N`` becomes the array's
  ``%N``; each shard runs on ``--num-threads`` threads (default 1). The dispatcher polls the
  array, prints each task's end as it sees it, and an interrupt cancels the array. A rerun
  whose earlier array still has tasks queued or running waits for those instead of submitting
  the shards again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.slurm import (CmdSpec, JobRecord, SlurmConfig, TaskEnd, cancelled_on_interrupt, earlier_job,
                               parse_cmd, submit, wait_for_job)


@dataclass(frozen=True)
class FailedJob:
    """A job that did not succeed: its exit status (and, from Slurm, how it ended) and its log."""

    job: int
    code: int
    log: Path
    how: str = ""
    """Slurm's account (``TIMEOUT, exit code 0, signal 15``); empty for a local job."""

    def describe(self) -> str:
        return self.how or f"exit code {self.code}"


def job_log(log_dir: Path, verb: str, job: int) -> Path:
    """``LOGDIR/VERB.J.log``: the log of shard ``job``, whichever launcher ran it."""
    return log_dir / f"{verb}.{job}.log"


def log_tail(path: Path, lines: int = 5) -> str:
    """The last non-empty lines of a log (progress-bar carriage returns count as line ends), indented."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in [ln for ln in text.splitlines() if ln.strip()][-lines:])


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_env(threads: int) -> dict[str, str]:
    """The thread-count variables of OpenMP, MKL and numba, all set to ``threads``."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


Command = Callable[[int, int, str | None], list[str]]
"""``command(job, threads, device)``: the command line of shard ``job``."""


class Launcher(Protocol):
    """Runs shards as separate jobs and waits for them (``--cmd NAME``)."""

    def run(self, verb: str, jobs: list[int], nj: int, command: Command, log_dir: Path, threads: int | None,
            device: str | None) -> list[FailedJob]:
        """Run ``command(j, ...)`` for every ``j`` in ``jobs`` (``nj`` shards in all), logging to
        :func:`job_log`; ``threads`` (None: the launcher's default) per job; return the failed ones."""
        ...


class LocalLauncher:
    """``--cmd local``: every job a subprocess on this machine, all started at once."""

    def __init__(self, spec: CmdSpec) -> None:
        if spec.options or spec.config:
            raise ConfigError(None, f"--cmd {spec}: 'local' takes no options")

    def run(self, verb: str, jobs: list[int], nj: int, command: Command, log_dir: Path, threads: int | None,
            device: str | None) -> list[FailedJob]:
        threads = threads or max(1, available_cores() // nj)
        print(f"{verb}: running {len(jobs)} local job(s) with {threads} thread(s) each; logs in {log_dir}",
              file=sys.stderr)
        env = {**os.environ, **thread_env(threads)}
        procs: list[tuple[int, subprocess.Popen[bytes], Path]] = []
        try:
            for job in jobs:
                path = job_log(log_dir, verb, job)
                path.parent.mkdir(parents=True, exist_ok=True)
                argv = command(job, threads, local_device(device, job))
                with open(path, "wb") as f:
                    f.write((" ".join(argv) + "\n").encode())
                    f.flush()
                    procs.append((job, subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env), path))
            return [FailedJob(job, code, path) for job, proc, path in procs if (code := proc.wait()) != 0]
        finally:
            for _job, proc, _path in procs:  # interrupted: stop the jobs (they resume on the next run)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=30)
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()


def local_device(device: str | None, job: int) -> str | None:
    """``auto`` with several GPUs puts local job j on GPU j mod count; anything else is passed on."""
    if device == "auto":
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            return f"cuda:{job % torch.cuda.device_count()}"
    return device


class SlurmLauncher:
    """``--cmd "slurm [--NAME VALUE ...] [--config FILE]"``: the shards as one Slurm array job."""

    def __init__(self, spec: CmdSpec) -> None:
        self.spec = spec
        self.config = SlurmConfig.load(spec.config)
        self.config.flags(spec.options)  # unknown options fail now, before any work

    def run(self, verb: str, jobs: list[int], nj: int, command: Command, log_dir: Path, threads: int | None,
            device: str | None) -> list[FailedJob]:
        options = dict(self.spec.options)
        if threads is not None:  # --threads T asks Slurm for T CPUs per task
            options["num_threads"] = str(threads)
        threads = int(options.get("num_threads", 1))
        log_dir.mkdir(parents=True, exist_ok=True)
        record = log_dir / f"{verb}.slurm.json"
        ended: dict[int | None, TaskEnd] = {}
        found = earlier_job(record)
        if found is not None:
            rec, live = found
            print(f"{verb}: Slurm job {rec.job_id} of an earlier run still has {len(live)} task(s) queued or running; "
                  "waiting for it instead of submitting them again", file=sys.stderr)
            ended.update(self._wait(verb, rec.job_id, [t for t in live if t in jobs]))
        todo = [j for j in jobs if j not in ended]
        if todo:
            script = self._write_script(verb, todo, command, log_dir, threads, device)
            throttle = options.pop("max_jobs_run", None)
            array = ",".join(map(str, todo)) + (f"%{throttle}" if throttle else "")
            sbatch = [*self.config.flags(options), f"--array={array}", f"--job-name=speechunits-{verb}",
                      f"--output={log_dir / (verb + '.%a.log')}", "--open-mode=truncate", f"--chdir={Path.cwd()}"]
            job_id = submit(sbatch, script)
            JobRecord(job_id, list(todo), str(script)).write(record)
            print(f"{verb}: submitted Slurm array job {job_id} ({len(todo)} task(s), {threads} thread(s) each): "
                  f"{shlex.join(sbatch)} {script}; logs in {log_dir}", file=sys.stderr)
            ended.update(self._wait(verb, job_id, todo))
        return [FailedJob(j, end.exit_code, job_log(log_dir, verb, j), end.describe())
                for j in jobs if not (end := ended[j]).ok]

    def _wait(self, verb: str, job_id: str, tasks: list[int]) -> dict[int | None, TaskEnd]:
        def report(end: TaskEnd) -> None:
            print(f"{verb}: Slurm task {job_id}_{end.task}: {end.state.lower() if end.ok else end.describe()}",
                  file=sys.stderr)

        with cancelled_on_interrupt(job_id, verb):
            return wait_for_job(job_id, list(tasks), on_end=report)

    def _write_script(self, verb: str, jobs: list[int], command: Command, log_dir: Path, threads: int,
                      device: str | None) -> Path:
        """``LOGDIR/VERB.slurm.sh``: task J execs shard J's command line (first echoed, as local logs start)."""
        cases = "".join(f"  {j}) argv=({shlex.join(command(j, threads, device))}) ;;\n" for j in jobs)
        exports = " ".join(f"{k}={v}" for k, v in thread_env(threads).items())
        script = log_dir / f"{verb}.slurm.sh"
        atomic_write_text(script, (
            "#!/bin/bash\n"
            f"# speechunits {verb}: task J of this Slurm array runs shard J (written by speechunits.launchers)\n"
            f"export {exports}\n"
            'case "${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm array}" in\n'
            f"{cases}"
            '  *) echo "no shard $SLURM_ARRAY_TASK_ID in $0" >&2; exit 2 ;;\n'
            "esac\n"
            'echo "${argv[*]}"\n'
            'echo "# Slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname)"\n'
            'exec "${argv[@]}"\n'))
        script.chmod(0o755)
        return script


LAUNCHERS: dict[str, type] = {"local": LocalLauncher, "slurm": SlurmLauncher}
"""``--cmd`` launcher name -> class (constructed from the parsed ``--cmd``, each with :meth:`Launcher.run`)."""


def make_launcher(cmd: str) -> Launcher:
    """The launcher of a ``--cmd`` value (``local``, ``"slurm --mem 4G"``); ConfigError when unknown."""
    spec = parse_cmd(cmd)
    if spec.name not in LAUNCHERS:
        raise ConfigError(None, f"--cmd {cmd!r}: unknown launcher {spec.name!r}; known: {', '.join(sorted(LAUNCHERS))}")
    launcher: Launcher = LAUNCHERS[spec.name](spec)
    return launcher


__all__ = [
    "LAUNCHERS",
    "FailedJob",
    "Launcher",
    "LocalLauncher",
    "SlurmLauncher",
    "available_cores",
    "job_log",
    "log_tail",
    "make_launcher",
]
