"""The chaos harness: kill a long job with SIGKILL at seeded random points, resume it, and check
that the final output equals an uninterrupted run's (issue 17; docs/reliability.md).

For one job (a :class:`ChaosJob`: how to build its inputs once, its command line, which files may
legitimately differ):

1. **Reference.** The inputs are copied into a fresh directory and the job runs there
   uninterrupted, with ``SPEECHUNITS_KILL_TRACE`` set: the trace lists every kill point the run
   passes (:mod:`speechunits.killpoints`: atomic writes before and after the rename, appended
   unit lines, shard progress, the merge's steps, training steps, metrics lines), per process.
2. **Trials.** Each trial copies the inputs afresh and runs the job 1 to ``max_kills_per_trial``
   times with a kill planned, then once without. A planned kill is either

   * a *point* kill: a kill-point stratum drawn uniformly from the reference trace's strata
     that no kill has reached yet (all of them once each has been reached; so the final merge
     and rename are drawn as often as the common points), then an occurrence uniformly among
     its count; the job kills its own process group there
     (``SPEECHUNITS_KILL_AT``; unit lines are cut in half first), or
   * a *timer* kill: the harness SIGKILLs the job's process group after a delay drawn uniformly
     from [0, reference wall time] (places no kill point names).

   A run that finishes before its planned kill ends the trial's kills. The job runs in a new
   session, so its local shard jobs die with it, as on a failed node.
3. **Checks** after the trial's last run (which must exit 0):

   * *mismatches*: every file of the reference tree exists and has the same bytes (for
     ``.json``/``.jsonl`` files: the same content once the job's volatile keys, such as
     timestamps, are dropped; files matching the job's ``ignore`` globs, such as logs and
     TensorBoard events, are not compared);
   * *leftovers*: files the reference does not have, and any temporary (``*.tmp*``,
     ``*.partial*``) anywhere in the tree;
   * *errors*: a run that exited non-zero without being killed, or hung past the timeout;
   * the job's own ``check`` (e.g. the summary line's counts equal the files).

:func:`run_chaos` runs trials until ``kills`` kills have happened and returns a
:class:`ChaosReport` (the row of the benchmark's table).
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechunits.killpoints import KILL_AT_ENV, TRACE_ENV

TEMPORARY_PATTERNS = ("*.tmp*", "*.partial*", ".*.tmp.*")
"""Names no finished job may leave behind (atomic writes' temporaries, resumable shards' partial files)."""
DEFAULT_VOLATILE = frozenset({"finished", "time", "git_commit", "wall_seconds", "seconds", "items_per_s",
                              "utt_per_second", "real_time_factor", "created"})
"""JSON keys (at any depth) that hold wall-clock times or rates, dropped before comparing ``.json``/``.jsonl``."""


@dataclass(frozen=True)
class ChaosJob:
    """One long job under test.

    ``build(dir)`` writes its inputs into ``dir`` once; ``argv(root)`` is the command line after
    ``python -m speechunits``, run with ``root`` (a copy of those inputs) as the working directory
    (so relative paths are best). ``ignore``: globs of paths (relative to ``root``) whose bytes
    may differ between runs. ``check(root, stderr)``: problems with the final run's output.
    """

    name: str
    build: Callable[[Path], None]
    argv: Callable[[Path], list[str]]
    ignore: tuple[str, ...] = ("**/log/*", "log/*")
    volatile: frozenset[str] = DEFAULT_VOLATILE
    check: Callable[[Path, str], list[str]] | None = None
    timeout: float = 600.0
    max_kills_per_trial: int = 3
    markers: tuple[str, ...] = ()
    """Tool markers of tests/conftest.py the job needs (``festival``): its chaos test carries them."""


@dataclass
class RunResult:
    """One process run: its exit code (-9: killed), stderr, wall seconds and the kill that fired."""

    code: int
    stderr: str
    wall: float
    killed_by: str | None = None


@dataclass
class ChaosReport:
    """What the chaos runs of one job found (a row of the benchmark's table)."""

    job: str
    kills: int = 0
    resumes: int = 0
    trials: int = 0
    reference_seconds: float = 0.0
    strata: int = 0
    mismatches: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fired: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.leftovers or self.errors)

    def summary(self) -> str:
        lines = [f"{self.job}: {self.kills} kills, {self.resumes} resumes, {self.trials} trials, "
                 f"{len(self.mismatches)} mismatches, {len(self.leftovers)} leftovers, {len(self.errors)} errors"]
        lines += [f"  mismatch: {m}" for m in self.mismatches[:10]]
        lines += [f"  leftover: {m}" for m in self.leftovers[:10]]
        lines += [f"  error: {m}" for m in self.errors[:5]]
        return "\n".join(lines)


# ------------------------------------------------------------------ running the job
def run_job(job: ChaosJob, root: Path, *, trace: Path | None = None, kill_at: str | None = None,
            kill_after: float | None = None) -> RunResult:
    """Run ``job`` in ``root`` in a new session; with ``kill_at`` (``KEY#K``) the job kills itself
    there, with ``kill_after`` the harness SIGKILLs its process group after that many seconds."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT_ENV, TRACE_ENV)}
    env.setdefault("NUMBA_CACHE_DIR", "/tmp/speechunits-numba-chaos")
    env["PYTHONHASHSEED"] = "0"
    if trace is not None:
        env[TRACE_ENV] = str(trace)
    if kill_at is not None:
        env[KILL_AT_ENV] = kill_at
    err_path = root / f".chaos-stderr-{time.monotonic_ns()}"
    start = time.perf_counter()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "speechunits", *job.argv(root)], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        killed_by = None
        try:
            proc.wait(timeout=kill_after if kill_after is not None else job.timeout)
        except subprocess.TimeoutExpired:
            killed_by = "timer" if kill_after is not None else "timeout"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _wait_group_gone(proc.pid)
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    err_path.unlink()
    if proc.returncode == -signal.SIGKILL and killed_by is None:
        killed_by = kill_at
    return RunResult(proc.returncode, stderr, time.perf_counter() - start, killed_by)


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no process of group ``pgid`` is left (killed shard jobs must not write on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        if not _group_alive(pgid):
            return
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """True when a non-zombie process of group ``pgid`` exists (zombies cannot write)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def read_trace(path: Path) -> dict[str, int]:
    """Kill-point key -> the most calls any one process made of it, from a trace file."""
    per_process: Counter[tuple[str, str]] = Counter()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            pid, key, _detail = line.split("\t", 2)
            per_process[(pid, key)] += 1
    most: dict[str, int] = {}
    for (_pid, key), n in per_process.items():
        most[key] = max(most.get(key, 0), n)
    return most


# ------------------------------------------------------------------ comparing trees
def _ignored(rel: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, g) for g in globs)


def is_temporary(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in TEMPORARY_PATTERNS)


def _drop_keys(obj: object, volatile: frozenset[str]) -> object:
    if isinstance(obj, dict):
        return {k: _drop_keys(v, volatile) for k, v in obj.items() if k.rsplit("/", 1)[-1] not in volatile}
    if isinstance(obj, list):
        return [_drop_keys(v, volatile) for v in obj]
    return obj


def comparable(path: Path, volatile: frozenset[str]) -> bytes:
    """The bytes of ``path`` to compare: JSON and JSONL without the volatile keys, anything else as it is."""
    data = path.read_bytes()
    try:
        if path.suffix == ".json":
            return json.dumps(_drop_keys(json.loads(data), volatile), sort_keys=True).encode()
        if path.suffix == ".jsonl":
            return b"\n".join(json.dumps(_drop_keys(json.loads(ln), volatile), sort_keys=True).encode()
                              for ln in data.splitlines())
    except (ValueError, UnicodeDecodeError):
        return data  # not JSON after all (or a cut line): compared byte for byte
    return data


def snapshot(root: Path, job: ChaosJob) -> dict[str, bytes]:
    """Relative path -> comparable bytes of every file under ``root`` (ignored ones and the harness's own excluded)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".chaos-") and not _ignored(rel, job.ignore):
            out[rel] = comparable(path, job.volatile)
    return out


def compare(reference: dict[str, bytes], root: Path, job: ChaosJob) -> tuple[list[str], list[str]]:
    """(mismatches, leftovers) of the tree at ``root`` against the reference snapshot."""
    got = snapshot(root, job)
    mismatches = [f"{rel}: missing" for rel in reference if rel not in got]
    mismatches += [f"{rel}: differs{describe_difference(reference[rel], got[rel])}" for rel in reference
                   if rel in got and got[rel] != reference[rel]]
    leftovers = [rel for rel in got if rel not in reference]
    leftovers += [p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and is_temporary(p.relative_to(root).as_posix())
                  and p.relative_to(root).as_posix() not in leftovers]
    return mismatches, leftovers


def describe_difference(expected: bytes, got: bytes) -> str:
    """Where two versions of a file first differ: the JSON paths whose values differ (up to 3), or
    the sizes and the first differing byte offset."""
    try:
        a, b = json.loads(expected), json.loads(got)
    except (ValueError, UnicodeDecodeError):
        offset = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
        return f" ({len(expected)} vs {len(got)} bytes, first difference at byte {offset})"
    paths: list[str] = []
    _json_paths(a, b, "", paths)
    return ": " + "; ".join(paths[:3])


def _json_paths(a: object, b: object, where: str, paths: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _json_paths(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}", paths)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _json_paths(x, y, f"{where}[{i}]", paths)
    elif a != b:
        paths.append(f"{where or '.'}: {str(a)[:80]} vs {str(b)[:80]}")


# ------------------------------------------------------------------ the chaos runs
@dataclass
class Reference:
    """The uninterrupted run: its output tree, its kill-point strata, its wall time and stderr."""

    tree: dict[str, bytes]
    strata: dict[str, int]
    wall: float
    stderr: str


def fresh_root(inputs: Path, work: Path) -> Path:
    """``work/run``, a fresh copy of ``inputs``: every run of a job happens at this one path, so
    paths a job resolves and records (a model's, a manifest's) are the same in every trial."""
    root = work / "run"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(inputs, root, symlinks=True)
    return root


def reference_run(job: ChaosJob, inputs: Path, work: Path) -> Reference:
    """Run the job once on a fresh copy of ``inputs``, uninterrupted, traced; keep its snapshot."""
    root = fresh_root(inputs, work)
    trace = work / "reference.trace"
    result = run_job(job, root, trace=trace)
    if result.code != 0:
        raise AssertionError(f"{job.name}: the uninterrupted run failed (exit {result.code}):\n{result.stderr[-3000:]}")
    problems = job.check(root, result.stderr) if job.check else []
    if problems:
        raise AssertionError(f"{job.name}: the uninterrupted run's output fails its check: {problems}")
    strata = read_trace(trace)
    trace.unlink()
    return Reference(snapshot(root, job), strata, result.wall, result.stderr)


def plan_kill(rng: random.Random, ref: Reference, fired: Collection[str] = ()) -> tuple[str | None, float | None]:
    """A point kill (``KEY#K``: a stratum, then an occurrence) or a timer kill (seconds), one or
    the other at random. The stratum is drawn among those no kill has ``fired`` at yet while
    there are any, so every kill point of the job is reached before any is reached twice."""
    if ref.strata and rng.random() < 0.5:
        key = rng.choice(sorted(set(ref.strata) - set(fired)) or sorted(ref.strata))
        return f"{key}#{rng.randint(1, ref.strata[key])}", None
    return None, rng.uniform(0.0, ref.wall)


def _problems(report: ChaosReport) -> int:
    return len(report.mismatches) + len(report.leftovers) + len(report.errors)


def run_chaos(job: ChaosJob, inputs: Path, work: Path, *, kills: int, seed: int = 0,
              max_trials: int | None = None, keep: bool = False) -> ChaosReport:
    """Trials of ``job`` (inputs built in ``inputs``) under ``work`` until ``kills`` kills happened."""
    rng = random.Random(f"{job.name}:{seed}")
    ref = reference_run(job, inputs, work)
    report = ChaosReport(job.name, reference_seconds=ref.wall, strata=len(ref.strata))
    max_trials = max_trials if max_trials is not None else 4 * kills + 4
    while report.kills < kills and report.trials < max_trials:
        report.trials += 1
        root = fresh_root(inputs, work)
        problems_before = _problems(report)
        killed_last = False
        failed = False
        for _ in range(rng.randint(1, job.max_kills_per_trial)):
            if report.kills >= kills:
                break
            kill_at, kill_after = plan_kill(rng, ref, report.fired)
            result = run_job(job, root, kill_at=kill_at, kill_after=kill_after)
            report.resumes += killed_last
            if result.killed_by == "timeout" or (result.code != 0 and result.code != -signal.SIGKILL):
                report.errors.append(f"trial {report.trials}: run exited {result.code} ({result.killed_by or 'no kill'})"
                                     f":\n{result.stderr[-2000:]}")
                failed = True
                break
            killed_last = result.code == -signal.SIGKILL
            if not killed_last:
                break  # finished before the planned kill
            report.kills += 1
            report.fired[(result.killed_by or "?").rsplit("#", 1)[0]] += 1
        if not failed and killed_last:
            result = run_job(job, root)
            report.resumes += 1
            if result.code != 0:
                report.errors.append(f"trial {report.trials}: the final resume exited {result.code}:\n"
                                     f"{result.stderr[-2000:]}")
                failed = True
        if not failed:
            mismatches, leftovers = compare(ref.tree, root, job)
            report.mismatches += [f"trial {report.trials}: {m}" for m in mismatches]
            report.leftovers += [f"trial {report.trials}: {m}" for m in leftovers]
            if job.check:
                report.mismatches += [f"trial {report.trials}: {p}" for p in job.check(root, result.stderr)]
        if problems_before != _problems(report):
            root.rename(work / f"trial{report.trials}")  # a failed trial's tree is kept for a look
    if not keep and (work / "run").exists():
        shutil.rmtree(work / "run")
    return report
