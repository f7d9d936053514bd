"""Slurm through its command-line tools: ``conf/slurm.conf``, ``sbatch``, ``scontrol``, ``scancel``.

Two kinds of job go to Slurm: the shards of a corpus job as one array
(:class:`speechunits.launchers.SlurmLauncher`, ``--cmd slurm``) and a training run
(``speechunits launch``). Both need the same four things, which live here:

* **Which sbatch flags** (:class:`SlurmConfig`): Kaldi's ``slurm.pl`` config format, so a
  cluster's partition, time and memory layout is edited in one file, ``conf/slurm.conf``::

      command sbatch --export=ALL          # the submit command and flags for every job
      option mem=* --mem-per-cpu $0        # --cmd "slurm --mem 4G" -> --mem-per-cpu 4G
      option gpu=0                         # an exact value wins over the * rule
      option gpu=* --gres=gpu:$0
      default gpu=0                        # the value when --cmd does not say

  ``--cmd "slurm --mem 4G --config conf/slurm.conf"`` (:func:`parse_cmd`) names the options; an
  option the file does not define is an error that lists those it does.
* **Submission** (:func:`submit`): ``sbatch --parsable``, so the job id is the whole answer.
* **Waiting** (:func:`wait_for_job`): ``scontrol -o show job ID`` polled by this process at
  growing intervals (0.5 s doubling up to ``SPEECHUNITS_SLURM_POLL`` seconds, default 10).
  ``sbatch --wait`` is not used: it polls at 2 s, 8 s, then every 32 s. Every poll records the
  final state and exit code of each task it sees end, because Slurm forgets a finished job
  ``MinJobAge`` seconds after its end (300 by default) and a cluster without accounting has
  no ``sacct`` to ask later. A task never seen to end is reported as gone without a status.
  A requeued job is seen pending again and waited for.
* **Node lists** (:func:`expand_hostlist`): ``gpu[01-04,07],cpu5`` as host names, for the
  training's rendezvous address.
* **Not submitting twice** (:class:`JobRecord`): the job id is written next to the logs at
  submission; a rerun whose earlier job still has tasks in the queue waits for that job
  instead of starting a second writer of the same files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechunits.errors import ConfigError, ExternalToolError
from speechunits.io_utils import atomic_write_json

CONFIG_NAME = Path("conf") / "slurm.conf"
"""Where ``--cmd slurm`` looks for its config when ``--config`` is not given (relative to the
current directory, as Kaldi's ``slurm.pl`` does; recipes run in ``egs/<corpus>/``)."""

DEFAULT_CONFIG = """\
# Kaldi slurm.pl format: how `--cmd "slurm --NAME VALUE"` options become sbatch flags.
command sbatch --export=ALL
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option max_jobs_run=*
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
default num_nodes=1
option num_nodes=* --nodes $0 --ntasks-per-node 1
"""
"""The config used when there is no ``conf/slurm.conf``: the one every ``egs/*/conf/`` ships."""

POLL_ENV = "SPEECHUNITS_SLURM_POLL"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                          "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})
"""Job states after which a task never runs again (a requeued job goes back to PENDING instead)."""


# ------------------------------------------------------------------ conf/slurm.conf
@dataclass(frozen=True)
class _Rule:
    value: str  # "*" or an exact value
    flags: tuple[str, ...]


@dataclass
class SlurmConfig:
    """A parsed ``slurm.conf`` (Kaldi ``slurm.pl`` format; see the module docstring)."""

    command: list[str]
    rules: dict[str, list[_Rule]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    source: str = "<built-in default>"

    @classmethod
    def parse(cls, text: str, source: str = "<built-in default>") -> SlurmConfig:
        command: list[str] | None = None
        rules: dict[str, list[_Rule]] = {}
        defaults: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                words = shlex.split(line)
            except ValueError as err:
                raise ConfigError(source, f"cannot split {raw.strip()!r}: {err}", line=number) from err
            kind, rest = words[0], words[1:]
            if kind == "command" and rest:
                command = rest
            elif kind in ("option", "default") and rest and "=" in rest[0]:
                name, value = rest[0].split("=", 1)
                if not name or not value:
                    raise ConfigError(source, f"expected NAME=VALUE after {kind!r}, got {rest[0]!r}", line=number)
                if kind == "default":
                    if len(rest) > 1:
                        raise ConfigError(source, f"'default {rest[0]}' takes no flags, got {' '.join(rest[1:])!r}", line=number)
                    defaults[name] = value
                else:
                    if value != "*" and any("$0" in f for f in rest[1:]):
                        raise ConfigError(source, f"$0 only makes sense in a NAME=* rule, got {raw.strip()!r}", line=number)
                    rules.setdefault(name, []).append(_Rule(value, tuple(rest[1:])))
            else:
                raise ConfigError(source, "expected 'command SBATCH FLAGS...', 'option NAME=VALUE|* FLAGS...' or "
                                          f"'default NAME=VALUE', got {raw.strip()!r}", line=number)
        if command is None:
            raise ConfigError(source, "no 'command' line (e.g. 'command sbatch --export=ALL')")
        for name in defaults:
            if name not in rules:
                raise ConfigError(source, f"'default {name}=...' for an option no 'option {name}=' line defines")
        return cls(command=command, rules=rules, defaults=defaults, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> SlurmConfig:
        """``path``, else ``./conf/slurm.conf`` when present, else :data:`DEFAULT_CONFIG`."""
        if path is None:
            if not CONFIG_NAME.is_file():
                return cls.parse(DEFAULT_CONFIG)
            path = CONFIG_NAME
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(path, f"cannot read the Slurm config: {err.strerror or err}") from err
        return cls.parse(text, source=str(path))

    def flags(self, options: dict[str, str]) -> list[str]:
        """The sbatch command and flags for ``options`` (``{"mem": "4G"}``) over the defaults."""
        unknown = sorted(set(options) - set(self.rules))
        if unknown:
            known = ", ".join("--" + n.replace("_", "-") for n in self.rules)
            raise ConfigError(self.source, f"slurm option(s) {', '.join('--' + n.replace('_', '-') for n in unknown)} "
                                           f"are not defined here; it defines: {known}")
        out = list(self.command)
        for name, rules in self.rules.items():
            value = options.get(name, self.defaults.get(name))
            if value is None:
                continue
            exact = [r for r in rules if r.value == value]
            rule = exact[0] if exact else next((r for r in rules if r.value == "*"), None)
            if rule is None:
                allowed = ", ".join(r.value for r in rules)
                raise ConfigError(self.source, f"slurm option --{name.replace('_', '-')} {value}: no rule matches "
                                               f"(values with rules: {allowed})")
            out += [f.replace("$0", value) for f in rule.flags]
        return out


@dataclass(frozen=True)
class CmdSpec:
    """A parsed ``--cmd`` value: the launcher's name and its ``--name value`` options."""

    name: str
    options: dict[str, str]
    config: Path | None = None

    def __str__(self) -> str:
        words = [self.name] + [w for k, v in self.options.items() for w in ("--" + k.replace("_", "-"), v)]
        if self.config is not None:
            words += ["--config", str(self.config)]
        return shlex.join(words)


def parse_cmd(text: str) -> CmdSpec:
    """``"slurm --mem 4G --num-threads 4 --config conf/slurm.conf"`` -> :class:`CmdSpec`.

    Option names are written with dashes and stored with underscores (``num_threads``), as
    ``slurm.conf`` names them; ``--name=value`` works too.
    """
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ConfigError(None, f"--cmd {text!r}: {err}") from err
    if not words:
        raise ConfigError(None, "--cmd is empty; expected e.g. 'local' or 'slurm --mem 4G'")
    options: dict[str, str] = {}
    config: Path | None = None
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        if not word.startswith("--") or len(word) < 3:
            raise ConfigError(None, f"--cmd {text!r}: expected --NAME VALUE pairs after {words[0]!r}, got {word!r}")
        name, eq, value = word[2:].partition("=")
        if not eq:
            if not rest:
                raise ConfigError(None, f"--cmd {text!r}: {word} needs a value")
            value = rest.pop(0)
        if name == "config":
            config = Path(value)
        else:
            options[name.replace("-", "_")] = value
    return CmdSpec(words[0], options, config)


# ------------------------------------------------------------------ hostlists
_HOST_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError("nested brackets")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("']' without '['")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError("'[' without ']'")
    parts.append(text[start:])
    return parts


def _expand_host(pattern: str) -> list[str]:
    """One hostlist entry (``gpu[01-04,07]``, ``rack[1-2]-n[1-3]``, ``cpu5``) as host names."""
    open_at = pattern.find("[")
    if open_at < 0:
        if "]" in pattern:
            raise ValueError("']' without '['")
        return [pattern]
    close_at = pattern.index("]", open_at)
    prefix, body, rest = pattern[:open_at], pattern[open_at + 1 : close_at], pattern[close_at + 1 :]
    numbers: list[str] = []
    for item in body.split(","):
        m = _HOST_RANGE.match(item.strip())
        if not m:
            raise ValueError(f"bad range {item!r} in [{body}]")
        lo, hi = m.group(1), m.group(2)
        if hi is None:
            numbers.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"descending range {item!r}")
        width = len(lo) if lo.startswith("0") else 0  # gpu[01-10]: gpu01 ... gpu10
        numbers += [str(n).zfill(width) for n in range(int(lo), int(hi) + 1)]
    tails = _expand_host(rest)
    return [prefix + n + tail for n in numbers for tail in tails]


def expand_hostlist(nodelist: str) -> list[str]:
    """The host names of a Slurm hostlist expression, in order: ``gpu[01-02,07],cpu5`` ->
    ``["gpu01", "gpu02", "gpu07", "cpu5"]`` (zero padding kept, several bracket groups in one
    name expanded left to right). A malformed expression raises :class:`ConfigError`."""
    try:
        hosts = [h for part in _split_top_level(nodelist.strip()) if part.strip() for h in _expand_host(part.strip())]
    except ValueError as err:
        raise ConfigError("<environment>", f"node list {nodelist!r}: {err}") from None
    if not hosts:
        raise ConfigError("<environment>", f"node list {nodelist!r}: no host in it")
    return hosts


# ------------------------------------------------------------------ the tools
def run_tool(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; :class:`ExternalToolError` when it is missing or (``check``) fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise ExternalToolError(None, f"{argv[0]} not found: --cmd slurm needs Slurm's sbatch, scontrol and "
                                      "scancel on PATH (run on a login node of the cluster)") from err
    if check and proc.returncode != 0:
        raise ExternalToolError(None, f"{shlex.join(argv)} failed (exit status {proc.returncode}): "
                                      f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def submit(sbatch: Sequence[str], script: Path) -> str:
    """``SBATCH... --parsable SCRIPT``; returns the job id."""
    proc = run_tool([*sbatch, "--parsable", str(script)])
    job_id = proc.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise ExternalToolError(None, f"{sbatch[0]} --parsable answered {proc.stdout.strip()!r}, not a job id")
    return job_id


def cancel(job_id: str) -> None:
    """``scancel JOB`` (every task of an array); a job already gone is not an error."""
    run_tool(["scancel", job_id], check=False)


@dataclass(frozen=True)
class TaskEnd:
    """How one task (an array task, or the whole job: ``task`` None) ended."""

    task: int | None
    state: str
    exit_code: int
    signal: int = 0

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code == 0

    def describe(self) -> str:
        if self.state == "GONE":
            return "no exit status: Slurm forgot the job before it was seen to end"
        if self.state in ("COMPLETED", "FAILED"):
            return f"exit code {self.exit_code}" + (f", signal {self.signal}" if self.signal else "")
        return f"{self.state}, exit code {self.exit_code}" + (f", signal {self.signal}" if self.signal else "")


def _fields(line: str) -> dict[str, str]:
    """``scontrol -o`` fields (``Key=value``; a word without ``=`` continues the previous value)."""
    out: dict[str, str] = {}
    key = None
    for word in line.split():
        name, eq, value = word.partition("=")
        if eq and re.fullmatch(r"[A-Za-z][A-Za-z0-9_:/]*", name):
            key = name
            out[key] = value
        elif key is not None:
            out[key] += " " + word
    return out


def _task_ids(spec: str) -> list[int]:
    """``0-3,7%2`` (an aggregated pending record's ArrayTaskId) -> ``[0, 1, 2, 3, 7]``."""
    out: list[int] = []
    for part in spec.split("%", 1)[0].split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def job_states(job_id: str) -> dict[int | None, tuple[str, int, int]] | None:
    """Task -> (state, exit code, signal) for every task Slurm still knows; None when it knows none."""
    proc = run_tool(["scontrol", "-o", "show", "job", job_id], check=False)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return None
        raise ExternalToolError(None, f"scontrol -o show job {job_id} failed (exit status {proc.returncode}): "
                                      f"{proc.stderr.strip()}")
    states: dict[int | None, tuple[str, int, int]] = {}
    for line in proc.stdout.splitlines():
        f = _fields(line)
        if "JobState" not in f:
            continue
        code, _, sig = f.get("ExitCode", "0:0").partition(":")
        value = (f["JobState"].split()[0], int(code or 0), int(sig or 0))  # the state's first word: no flags
        task = f.get("ArrayTaskId")
        for t in _task_ids(task) if task else [None]:
            states[t] = value
    return states


def poll_intervals(first: float = 0.5) -> Iterator[float]:
    """0.5, 1, 2, ... seconds, capped at ``$SPEECHUNITS_SLURM_POLL`` (default 10)."""
    cap = float(os.environ.get(POLL_ENV) or 10.0)
    interval = first
    while True:
        yield min(interval, cap)
        interval *= 2


def wait_for_job(job_id: str, tasks: Sequence[int | None], *, on_end: Callable[[TaskEnd], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> dict[int | None, TaskEnd]:
    """Poll until every task of ``tasks`` has ended; returns how each ended.

    ``on_end`` is called once per task as soon as its end is seen (progress, early messages).
    A task that Slurm no longer lists before it was seen to end is reported with state ``GONE``.
    """
    ended: dict[int | None, TaskEnd] = {}
    for interval in poll_intervals():
        states = job_states(job_id) or {}
        for task in tasks:
            if task in ended:
                continue
            state = states.get(task)
            if state is None or state[0] in FINAL_STATES:
                end = TaskEnd(task, "GONE", -1) if state is None else TaskEnd(task, *state)
                ended[task] = end
                if on_end is not None:
                    on_end(end)
        if len(ended) == len(tasks):
            return ended
        sleep(interval)
    raise AssertionError("unreachable")  # pragma: no cover


def live_tasks(job_id: str, tasks: Sequence[int | None]) -> list[int | None]:
    """The tasks of ``tasks`` that Slurm lists and that have not ended (pending, running, requeued)."""
    states = job_states(job_id) or {}
    return [t for t in tasks if t in states and states[t][0] not in FINAL_STATES]


# ------------------------------------------------------------------ one job per output
@dataclass(frozen=True)
class JobRecord:
    """``<name>.slurm.json`` beside the logs: the job submitted for an output, and its tasks."""

    job_id: str
    tasks: list[int | None]
    script: str

    @classmethod
    def read(cls, path: Path) -> JobRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["job_id"]), list(data["tasks"]), str(data["script"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        atomic_write_json(path, {"job_id": self.job_id, "tasks": self.tasks, "script": self.script})


def earlier_job(record: Path) -> tuple[JobRecord, list[int | None]] | None:
    """The job an earlier (killed) dispatcher submitted for this output, when it still has live tasks."""
    rec = JobRecord.read(record)
    if rec is None:
        return None
    live = live_tasks(rec.job_id, rec.tasks)
    return (rec, live) if live else None


@contextlib.contextmanager
def cancelled_on_interrupt(job_id: str, what: str) -> Iterator[None]:
    """Ctrl-C while waiting cancels the job (as ``--cmd local`` stops its jobs); the rerun resumes."""
    try:
        yield
    except KeyboardInterrupt:
        cancel(job_id)
        print(f"{what}: interrupted: cancelled Slurm job {job_id}; rerun the same command to resume", file=sys.stderr)
        raise


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CONFIG",
    "CmdSpec",
    "JobRecord",
    "SlurmConfig",
    "TaskEnd",
    "cancel",
    "expand_hostlist",
    "cancelled_on_interrupt",
    "earlier_job",
    "job_states",
    "live_tasks",
    "parse_cmd",
    "submit",
    "wait_for_job",
]
