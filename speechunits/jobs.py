"""One sharded-job runner for corpus jobs: shards, their records, local parallel jobs, resume, merge.

A corpus job turns every item of its input (an utterance to tokenize, a planned utterance to
synthesize) into its output, or into one line of ``bad_utts.txt`` saying why not. What such
jobs share lives here; what they write lives behind a small protocol, :class:`ShardOutput`,
so each command keeps only its own output format and its own work per item:

* **Shard assignment** (:func:`shard_of`): items sorted by id, dealt round-robin, so shard
  ``j`` of ``nj`` is ``sorted(items)[j::nj]`` whatever the input order.
* **Shard record** ``OUT/<verb>.J.json``: ``{config_hash, finished, given, written, bad}``,
  written atomically. A shard finished under the same config hash (its output files and
  ``bad_utts.J.txt`` in place) is skipped on rerun; the files of a shard left by a different
  config are deleted before it runs, so a changed parameter redoes the work instead of mixing
  outputs.
* **One shard's run** (:meth:`JobRunner.open_shard`, a :class:`ShardRun`): opens the output's
  :class:`ShardWriter` (which knows the items an earlier, possibly killed, run already
  finished), lists the items still to do, shows progress (items/s, real-time factor), and on
  success checks that every item of the shard was written or listed bad, then writes
  ``bad_utts.J.txt``, lets the writer finish the shard, and writes the finished record, in
  that order.
* **Launchers** (``--cmd``, :mod:`speechunits.launchers`): without ``--job`` and with ``--nj N
  > 1``, the unfinished shards run as jobs ``python -m speechunits VERB ... --job j --threads T``
  logging to ``OUT/log/VERB.J.log``: ``--cmd local`` as subprocesses on this machine,
  ``--cmd "slurm ..."`` as one Slurm array. A failed job is named with how it ended, its log
  tail and the advice to rerun, which resumes: only shards without a finished record run again.
* **Merge** (:meth:`JobRunner.merge`): the temporaries killed runs left in ``OUT`` go
  (:func:`~speechunits.io_utils.remove_temporaries`), the output merges its shards (:meth:`ShardOutput.merge`,
  which returns the ids it holds, read from its files), ``bad_utts.J.txt`` are gathered into
  ``bad_utts.txt`` (sorted by id, ``id<TAB>reason``), then the accounting check: the ids
  written and the ids listed bad are disjoint and together exactly the input ids, else an
  :class:`~speechunits.errors.InternalError` naming them (a bug, never a silent pass); then
  the shard records go and ``provenance.json`` is written last. The summary line counts the
  files, not the jobs.

:meth:`JobRunner.run` strings these together the same way for every command: a complete
output (``provenance.json`` of the same config) is skipped; ``--job J`` runs shard J only (one
task of a cluster array); otherwise the unfinished shards run (``--nj 1``: in this process,
unless ``--cmd`` is a cluster's, which gets it as one job) and are merged. After an array,
the same command without ``--job`` finds every shard finished and only merges.

This module stands on the ground floor (errors, io_utils, provenance): the unit-set output of
tokenize, bootstrap-segments and frame-units is :mod:`speechunits.units.shard_output`, the
synthetic-corpus output of synth-corpus is :mod:`speechunits.data.synth.corpus_job`, and both
stand on it.

Test hook: the environment variable ``SPEECHUNITS_JOB_DELAY`` (seconds) makes
:meth:`ShardRun.pause` sleep after each written batch, so a test can kill a job mid-way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tqdm import tqdm

from speechunits.errors import AudioError, ConfigError, InternalError
from speechunits.io_utils import atomic_write_json, atomic_write_text, remove_temporaries, sha256_json
from speechunits.killpoints import kill_point
from speechunits.launchers import FailedJob, Launcher, LocalLauncher, log_tail, make_launcher
from speechunits.provenance import invalidate_provenance, is_complete, write_provenance

logger = logging.getLogger(__name__)

RUNNER_FORMAT = "speechunits.jobs/1"
"""Part of every shard's config hash: shards written by an older runner are redone, never mixed in."""
BAD_NAME = "bad_utts.txt"
DELAY_ENV = "SPEECHUNITS_JOB_DELAY"


class Item(Protocol):
    """What the runner needs of an input item: a unique id."""

    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=Item)
W = TypeVar("W", bound="ShardWriter")


# ------------------------------------------------------------------ assignment
def shard_of(items: Sequence[T], job: int, nj: int) -> list[T]:
    """Round-robin shard ``job`` of ``nj`` over ``items`` (anything with an ``id``) sorted by id."""
    return sorted(items, key=lambda u: u.id)[job::nj]


def bad_path(out: Path, job: int | None = None) -> Path:
    """``OUT/bad_utts.txt``, or shard ``job``'s ``OUT/bad_utts.J.txt``."""
    return out / (BAD_NAME if job is None else f"bad_utts.{job}.txt")


def write_bad_lines(path: Path, lines: Iterable[str]) -> list[str]:
    """Write ``id<TAB>reason`` lines sorted by id, atomically; returns them in that order."""
    ordered = sorted(lines, key=lambda ln: ln.split("\t", 1)[0])
    atomic_write_text(path, "".join(ln + "\n" for ln in ordered))
    return ordered


# ------------------------------------------------------------------ command line
def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """``--nj``, ``--job``, ``--cmd`` and ``--threads``: the same meaning in every sharded command."""
    group = parser.add_argument_group("jobs (see docs/jobs.md)")
    group.add_argument("--nj", type=int, default=1, help="number of shards, i.e. parallel jobs (default 1); "
                                                         "utterances sorted by id are dealt round-robin")
    group.add_argument("--job", type=int, default=None, help="run only shard J (0-based), e.g. one task of a cluster "
                                                             "array; the same command without --job then merges")
    group.add_argument("--cmd", default="local",
                       help="how the unfinished shards run when no --job is given: 'local' = subprocesses on "
                            "this machine (default; --nj 1 runs in this process); 'slurm [--mem 4G --time 1:00:00 "
                            "--gpu 1 --num-threads N --max-jobs-run N --config conf/slurm.conf]' = one sbatch array "
                            "(--nj 1 too), flags from conf/slurm.conf (see docs/cluster.md)")
    group.add_argument("--threads", type=int, default=None,
                       help="CPU threads per job (default: all cores for one job, cores // nj for local jobs, "
                            "--num-threads (1) for Slurm tasks)")


def check_job_args(args: argparse.Namespace) -> Launcher:
    """ConfigError for ``--nj``/``--job``/``--threads``/``--cmd`` values no run can honour; returns
    the ``--cmd`` launcher."""
    if args.nj < 1 or (args.job is not None and not 0 <= args.job < args.nj):
        raise ConfigError(None, f"need --nj >= 1 and 0 <= --job < --nj, got --nj {args.nj} --job {args.job}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(None, f"--threads must be >= 1, got {args.threads}")
    return make_launcher(args.cmd)  # an unknown launcher or Slurm option fails before any work


def command_line(add_arguments: Callable[[argparse.ArgumentParser], None], args: argparse.Namespace,
                 **overrides: Any) -> list[str]:
    """The options of ``args`` (as ``add_arguments`` defines them) written back as a command line.

    ``overrides`` replace values by destination name (``job=3``). Options whose value is None
    are left out, so of a mutually exclusive pair only the one given is written.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    argv: list[str] = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its actions
        if not action.option_strings:
            raise ConfigError(None, f"positional argument {action.dest!r} cannot be forwarded to a job")
        value = overrides.get(action.dest, getattr(args, action.dest, None))
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            argv += [flag] if value else []
        elif isinstance(action, argparse._StoreFalseAction):  # noqa: SLF001
            argv += [] if value else [flag]
        elif type(action) is not argparse._StoreAction or action.nargs not in (None, "?"):  # noqa: SLF001
            raise ConfigError(None, f"option {flag} ({type(action).__name__}, nargs={action.nargs!r}) cannot be "
                                    "forwarded to a job: only single-valued options and flags can")
        elif value is not None:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def limit_threads(threads: int | None) -> None:
    """Use at most ``threads`` torch threads in this process (None: leave the default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def log_to_stderr() -> None:
    """INFO messages of speechunits (shard summaries, warnings) to stderr, once per process."""
    root = logging.getLogger("speechunits")
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


# ------------------------------------------------------------------ what a job kind writes
class ShardWriter(Protocol):
    """One shard's open output (from :meth:`ShardOutput.open_shard`); the job writes its items through it."""

    def finished_ids(self) -> set[str]:
        """Ids of the shard whose output is in place, those of earlier (killed) runs included."""
        ...

    def finish(self) -> None:
        """Every item of the shard is accounted for: make the shard's output final."""
        ...

    def abort(self, exc: BaseException) -> None:
        """The run failed or was interrupted: keep what is written, so that a rerun resumes after it."""
        ...


class ShardOutput(Protocol[W]):
    """What a job kind writes, shard by shard, and how its shards become one output.

    The runner never looks inside: resume asks :meth:`open_shard`'s writer which items are
    finished, a shard of another config loses :meth:`shard_files`, and the merge trusts only
    the ids :meth:`merge` reads back from the merged files.
    """

    where: str
    """Where the written items end up, for the summary line (``units.jsonl``, a corpus root)."""

    def open_shard(self, job: int, nj: int, items: Sequence[Any], **options: Any) -> W:
        """Open shard ``job`` of ``nj`` (its ``items``) for writing, resuming what an earlier run left."""
        ...

    def shard_files(self, job: int) -> list[Path]:
        """Every file shard ``job`` may leave, partial or finished (deleted when made under another config)."""
        ...

    def shard_in_place(self, job: int) -> bool:
        """The files a finished shard ``job`` leaves for the merge are still there."""
        ...

    def merge(self, nj: int) -> list[str]:
        """Join the ``nj`` finished shards into the output; returns the ids it holds, read from its files.

        An output that knows how much audio it holds may set an attribute ``audio_seconds``
        (float) here; the summary line reports it (optional: the runner reads it with ``getattr``).
        """
        ...


class ItemFileShard:
    """A :class:`ShardWriter` for jobs that write one file per item, atomically, the item's last
    write: an item is finished when its file exists, so there is nothing to finish or to keep on
    abort (the synthesis commands)."""

    def __init__(self, items: Sequence[Any], path_of: Callable[[Any], Path]) -> None:
        self.items, self.path_of = list(items), path_of

    def finished_ids(self) -> set[str]:
        return {it.id for it in self.items if self.path_of(it).is_file()}

    def finish(self) -> None:
        pass

    def abort(self, exc: BaseException) -> None:
        pass


class ItemFileOutput:
    """Base of a :class:`ShardOutput` whose shards are :class:`ItemFileShard` s: a file depends only on
    its item (and the claimed settings), so no shard has files of its own. Subclasses define
    ``where``, :meth:`path_of` and :meth:`merge`."""

    where = ""

    def __init__(self, out: Path, items: Sequence[Any]) -> None:
        self.out, self.items = out, list(items)

    def path_of(self, item: Any) -> Path:
        """The file whose existence means ``item`` is finished."""
        raise NotImplementedError

    def open_shard(self, job: int, nj: int, items: Sequence[Any], **options: Any) -> ItemFileShard:
        return ItemFileShard(items, self.path_of)

    def shard_files(self, job: int) -> list[Path]:
        return []

    def shard_in_place(self, job: int) -> bool:
        return True

    def merge(self, nj: int) -> list[str]:
        raise NotImplementedError


# ------------------------------------------------------------------ one shard
@dataclass
class ShardReport:
    """What one shard's run did (``utterances`` excludes those finished by earlier runs)."""

    job: int
    nj: int
    utterances: int = 0
    already_done: int = 0
    bad: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    skipped_complete: bool = False
    bad_lines: list[str] = field(default_factory=list)

    @property
    def utt_per_second(self) -> float:
        return self.utterances / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Audio seconds per wall second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class ShardRecord:
    """``OUT/<verb>.J.json``: the config a shard runs under, whether it finished, and its counts."""

    config_hash: str
    finished: bool
    given: int = 0
    written: int = 0
    bad: int = 0


class ShardRun(Generic[W]):
    """One shard's run, from :meth:`JobRunner.open_shard` (a context manager; see the module docstring).

    In the ``with`` block the caller works through :attr:`todo`, writes results through
    :attr:`writer`, and reports each step with :meth:`progress` (and failures with
    :meth:`add_bad`). :attr:`report` holds the counts.
    """

    writer: W

    def __init__(self, runner: JobRunner[W], job: int, options: dict[str, Any]) -> None:
        self.runner = runner
        self.job = job
        self.items = shard_of(runner.items, job, runner.nj)
        self.options = options
        self.report = ShardReport(job=job, nj=runner.nj)
        self.todo: list[Any] = []
        self._bad_ids: set[str] = set()
        self._delay = float(os.environ.get(DELAY_ENV, "0") or 0)

    def __enter__(self) -> ShardRun[W]:
        r, job = self.runner, self.job
        r.out.mkdir(parents=True, exist_ok=True)
        invalidate_provenance(r.out)
        record = r.read_record(job)
        if r.force or (record is not None and record.config_hash != r.config_hash):
            if record is not None and not r.force:
                logger.warning("%s job %d: removing a shard made with a different config", r.verb, job)
            r.remove_shard(job)
        r.write_record(job, ShardRecord(r.config_hash, finished=False, given=len(self.items)))
        self.writer = r.output.open_shard(job, r.nj, self.items, **self.options)
        done = self.writer.finished_ids()
        self.todo = [u for u in self.items if u.id not in done]
        self.report.already_done = len(self.items) - len(self.todo)
        self._start = time.perf_counter()
        self._bar = tqdm(total=len(self.todo), desc=f"{r.verb} job {job}/{r.nj}", unit="utt", file=sys.stderr,
                         disable=not r.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        return self

    def add_bad(self, lines: Iterable[str]) -> None:
        """Record left-out items (``id<TAB>reason`` lines)."""
        for line in lines:
            self._bad_ids.add(line.split("\t", 1)[0])
            self.report.bad_lines.append(line)

    def progress(self, written: int, bad_lines: Sequence[str] = (), audio_seconds: float = 0.0) -> None:
        """``written`` items (``audio_seconds`` of audio) and ``bad_lines`` more are done."""
        kill_point("shard-progress", self.runner.verb)
        self.add_bad(bad_lines)
        self.report.utterances += written
        self.report.audio_seconds += audio_seconds
        self._bar.update(written + len(bad_lines))
        wall = max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix_str(f"{self.report.utterances / wall:.2f} utt/s, "
                                  f"RTF {self.report.audio_seconds / wall:.1f}x", refresh=False)

    @property
    def delay(self) -> float:
        """The test hook's sleep after each batch (0 normally)."""
        return self._delay

    def pause(self) -> None:
        """After a written batch: sleep for the test hook (``SPEECHUNITS_JOB_DELAY``), if set."""
        if self._delay > 0:
            time.sleep(self._delay)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._bar.close()
        if exc_type is not None:
            self.writer.abort(exc)  # keeps the partial shard for the rerun
            return
        r, report = self.runner, self.report
        written = self.writer.finished_ids()
        missing = [u.id for u in self.todo if u.id not in written and u.id not in self._bad_ids]
        both = sorted(written & self._bad_ids)
        if missing or both:
            err = InternalError(r.out, f"internal error: {r.verb} job {self.job}: {accounting_problem(missing, both)}")
            self.writer.abort(err)
            raise err
        report.bad = len(report.bad_lines)
        write_bad_lines(bad_path(r.out, self.job), report.bad_lines)
        self.writer.finish()
        r.write_record(self.job, ShardRecord(r.config_hash, finished=True, given=len(self.items),
                                             written=len(written), bad=report.bad))
        report.wall_seconds = time.perf_counter() - self._start
        logger.info("%s job %d/%d: %d utterances (%d done before), %d bad, %.1f s audio in %.1f s: %.1f utt/s, "
                    "%.1fx real time", r.verb, self.job, r.nj, report.utterances, report.already_done, report.bad,
                    report.audio_seconds, report.wall_seconds, report.utt_per_second, report.real_time_factor)


def accounting_problem(missing: Sequence[str], both: Sequence[str], unexpected: Sequence[str] = (),
                       twice: Sequence[str] = ()) -> str:
    """The message of a broken "every utterance once" invariant, naming (up to 20 of) the ids."""
    def ids(xs: Sequence[str]) -> str:
        return ", ".join(xs[:20]) + (f", ... ({len(xs)} in all)" if len(xs) > 20 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} utterance(s) neither written nor listed bad: {ids(missing)}")
    if both:
        parts.append(f"{len(both)} utterance(s) both written and listed bad: {ids(both)}")
    if unexpected:
        parts.append(f"{len(unexpected)} id(s) that are not in the input: {ids(unexpected)}")
    if twice:
        parts.append(f"{len(twice)} id(s) listed bad twice: {ids(twice)}")
    return "; ".join(parts) + " (please report this bug)"


# ------------------------------------------------------------------ the runner
@dataclass(frozen=True)
class MergeSummary:
    """Counts of the merged output, read from its files."""

    written: int
    bad: int
    audio_seconds: float | None = None
    """Seconds of audio in the merged output, when the output reports it (``ShardOutput.merge``)."""


class JobRunner(Generic[W]):
    """The sharded run of one command over a list of items (see the module docstring).

    Args:
        verb: the command (``tokenize``): names the records and logs; local jobs run ``speechunits VERB``.
        items: the whole input, anything with a unique ``id`` (every shard is taken from it; its
            ids are checked at the merge).
        out: the directory of the shard records, bad lists, logs and ``provenance.json``.
        nj: number of shards.
        output: what the shards write and how they are merged (a :class:`ShardOutput`).
        effective: the config stored in ``provenance.json`` (decides whether the output is complete).
        inputs: files fingerprinted in ``provenance.json``.
        shard_config: what else decides a shard's content besides ``effective`` (e.g. the hash of
            a codebook trained before the shards); part of the shard records' hash.
        force: redo a complete output and finished shards.
        progress: progress bars.
    """

    def __init__(self, verb: str, *, items: Sequence[Item], out: Path, nj: int, output: ShardOutput[W],
                 effective: dict[str, Any], inputs: Sequence[Path] = (), shard_config: Any = None,
                 force: bool = False, progress: bool = True) -> None:
        if nj < 1:
            raise ConfigError(None, f"--nj must be >= 1, got {nj}")
        self.verb = verb
        self.items = list(items)
        self.out = Path(out)
        self.nj = nj
        self.output = output
        self.effective = effective
        self.inputs = list(inputs)
        self.force = force
        self.progress = progress
        self.shard_config = shard_config

    @property
    def config_hash(self) -> str:
        """The hash a shard's record must hold for the shard to count as this run's."""
        return sha256_json({"runner": RUNNER_FORMAT, "nj": self.nj, "config": self.effective,
                            "shard_config": self.shard_config})

    # ---------------------------------------------------------------- state on disk
    def complete(self) -> bool:
        """True when the output is complete for this config (``provenance.json``) and not forced."""
        return not self.force and is_complete(self.out, self.effective)

    def record_path(self, job: int) -> Path:
        return self.out / f"{self.verb}.{job}.json"

    def read_record(self, job: int) -> ShardRecord | None:
        try:
            return ShardRecord(**json.loads(self.record_path(job).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def write_record(self, job: int, record: ShardRecord) -> None:
        atomic_write_json(self.record_path(job), asdict(record))

    def shard_done(self, job: int) -> bool:
        """Shard ``job`` finished under this config, and its files are in place."""
        rec = self.read_record(job)
        return (not self.force and rec is not None and rec.finished and rec.config_hash == self.config_hash
                and self.output.shard_in_place(job) and bad_path(self.out, job).is_file())

    def unfinished(self) -> list[int]:
        return [j for j in range(self.nj) if not self.shard_done(j)]

    def remove_shard(self, job: int) -> None:
        """Delete every file shard ``job`` may have left (its output's shard files, bad list, record)."""
        for path in [*self.output.shard_files(job), bad_path(self.out, job), self.record_path(job)]:
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- running
    def open_shard(self, job: int, **options: Any) -> ShardRun[W]:
        """Shard ``job``'s run; ``options`` go to :meth:`ShardOutput.open_shard` (e.g. a unit set's kind)."""
        return ShardRun(self, job, options)

    def launch(self, launcher: Launcher, jobs: list[int], args: argparse.Namespace,
               add_arguments: Callable[[argparse.ArgumentParser], None]) -> list[FailedJob]:
        """Run ``jobs`` through ``launcher`` as ``python -m speechunits VERB <args> --job j``.

        ``args`` are the command's parsed options (written back with ``add_arguments``); each job
        gets ``--threads`` (``--threads``, else the launcher's default) and, where the command has
        ``--device``, the device the launcher gives it (see :mod:`speechunits.launchers`).
        """
        device = getattr(args, "device", None)

        def command(job: int, threads: int, job_device: str | None) -> list[str]:
            extra = {"device": job_device} if device is not None else {}
            return [sys.executable, "-m", "speechunits", self.verb,
                    *command_line(add_arguments, args, job=job, threads=threads, **extra)]

        return launcher.run(self.verb, jobs, self.nj, command, self.out / "log", args.threads, device)

    def merge(self, *, empty_ok: bool = True) -> MergeSummary:
        """Merge the shards, gather ``bad_utts.txt``, check the accounting, write provenance (last)."""
        out = self.out
        remove_temporaries(out)  # of killed runs: every shard job has finished, nothing else writes here
        written = self.output.merge(self.nj)
        lines = write_bad_lines(bad_path(out), [ln for j in range(self.nj)
                                                for ln in bad_path(out, j).read_text(encoding="utf-8").splitlines()])
        bad = [ln.split("\t", 1)[0] for ln in lines]
        given = {u.id for u in self.items}
        have = set(written) | set(bad)
        missing = sorted(given - have)
        both = sorted(set(written) & set(bad))
        unexpected = sorted(have - given)
        twice = sorted(b for b, n in Counter(bad).items() if n > 1)
        if missing or both or unexpected or twice:
            raise InternalError(out, f"internal error: {self.verb}: {self.output.where} + {BAD_NAME} do not account "
                                     f"for the {len(given)} input utterances once each: "
                                     f"{accounting_problem(missing, both, unexpected, twice)}")
        if not written and not empty_ok:
            raise AudioError(bad_path(out), f"none of the {len(given)} utterances could be used (reasons in this file)")
        for j in range(self.nj):
            kill_point("merge-remove-records", f"{self.verb}.{j}")
            bad_path(out, j).unlink(missing_ok=True)
            self.record_path(j).unlink(missing_ok=True)
        write_provenance(out, self.effective, inputs=self.inputs)
        seconds = getattr(self.output, "audio_seconds", None)
        return MergeSummary(written=len(written), bad=len(bad), audio_seconds=seconds)

    def run(self, run_shard: Callable[[int], Any], args: argparse.Namespace,
            add_arguments: Callable[[argparse.ArgumentParser], None], *, empty_ok: bool = True) -> int:
        """The whole command: skip, one shard (``--job``), or the unfinished shards then the merge.

        ``run_shard(j)`` runs shard ``j`` in this process (through :meth:`open_shard`); ``args``
        carry :func:`add_job_arguments`' options. Returns the exit status (1: a job failed).
        """
        launcher = check_job_args(args)
        start = time.perf_counter()
        if self.complete():
            print(f"{self.verb}: {self.out} is complete for this config; nothing to do", file=sys.stderr)
            return 0
        if args.job is not None:
            if self.shard_done(args.job):
                print(f"{self.verb}: job {args.job} of {self.nj} is complete for this config; nothing to do",
                      file=sys.stderr)
            else:
                run_shard(args.job)
            return 0
        todo = self.unfinished()
        if todo and self.nj == 1 and isinstance(launcher, LocalLauncher):  # a cluster --cmd submits even one shard
            run_shard(0)
        elif todo:
            failed = self.launch(launcher, todo, args, add_arguments)
            if failed:
                for f in failed:
                    print(f"{self.verb}: job {f.job} failed ({f.describe()}); see {f.log}\n{log_tail(f.log)}",
                          file=sys.stderr)
                print(f"{self.verb}: {len(failed)} of {len(todo)} job(s) failed; rerun the same command to resume",
                      file=sys.stderr)
                return 1
        summary = self.merge(empty_ok=empty_ok)
        audio = "" if summary.audio_seconds is None else f", {summary.audio_seconds:.1f} s of audio"
        print(f"{self.verb}: wrote {self.out}: {summary.written} utterance(s) in {self.output.where}, {summary.bad} "
              f"in {BAD_NAME}{audio} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
        if summary.bad:
            print(f"{self.verb}: left out {summary.bad} utterance(s); reasons in {bad_path(self.out)}", file=sys.stderr)
        return 0


__all__ = [
    "BAD_NAME",
    "DELAY_ENV",
    "JobRunner",
    "MergeSummary",
    "ShardOutput",
    "ShardRecord",
    "ShardReport",
    "ShardRun",
    "ShardWriter",
    "add_job_arguments",
    "check_job_args",
    "command_line",
    "shard_of",
    "write_bad_lines",
]
