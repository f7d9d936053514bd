"""``synth-corpus`` on the sharded-job runner: planned utterances in, audio and alignments out.

:mod:`.layouts` turns a seed and sizes into a :class:`Plan`: every utterance's id, text,
speaker and output paths, decided before anything is synthesized. This module runs a plan
on :class:`~speechunits.jobs.JobRunner`, whose records, bad lists, logs and
``provenance.json`` live in ``OUT/.synth/<layout>/``:

* **Items and shards.** The items are the planned utterances; shard ``j`` of ``--nj N`` is
  every N-th of them sorted by id. ``--job J`` synthesizes shard J only (one task of a
  cluster array), ``--nj N`` without ``--job`` runs the unfinished shards as N local
  ``python -m speechunits synth-corpus ... --job j`` subprocesses (logs in
  ``OUT/.synth/<layout>/log/``), and the same command without ``--job`` after an array only
  merges.
* **Resume is per utterance** (:class:`SynthShard`): an utterance is finished when its audio
  (and alignment) file exists; both are written atomically, audio first, so a killed job
  loses at most the chunk in flight. A shard therefore has no files of its own to delete
  when it was started under another ``--nj``: audio depends only on the utterance, and
  :func:`claim` refuses a directory started with another config.
* **Chunks.** A shard's remaining utterances are synthesized in chunks of at most
  ``MAX_CHUNK``, one festival process per chunk (festival's start-up costs more than a short
  utterance); espeak-ng speakers run one process per utterance.
* **A failing utterance is listed bad, not fatal.** When festival fails on a chunk, each of
  its utterances runs again alone (:func:`~.festival.synthesize_each`), so one sentence
  festival cannot say costs only itself: it goes to the shard's ``bad_utts.J.txt`` with
  festival's message, and the rest of the corpus is made. A festival that fails on
  everything ends in an error at the merge (no utterance could be made). Errors of the run
  itself (missing tools or voices, a full disk) stay fatal.
* **Merge** (:class:`CorpusOutput`): the layout's transcript/metadata files, ``speakers.json``
  and ``utterances.json`` list the utterances whose files exist; the runner then checks that
  every planned utterance has its files or a bad line, and writes ``provenance.json`` last.

Audio depends only on each utterance's own text and speaker (every festival block sets its
voice and prosody explicitly), so the corpus is byte-identical for any ``--nj``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.audio import resample, write_audio
from speechunits.data.alignments import Interval, write_textgrid
from speechunits.data.synth.espeak import espeak_binary, synthesize_espeak
from speechunits.data.synth.festival import FestivalRequest, check_festival, synthesize_each
from speechunits.data.synth.synth_cli import add_arguments
from speechunits.data.synth.voices import Speaker
from speechunits.errors import ConfigError, ExternalToolError
from speechunits.io_utils import atomic_write_json
from speechunits.jobs import JobRunner, check_job_args, limit_threads

VERB = "synth-corpus"
MAX_CHUNK = 32
"""Utterances per festival process."""


@dataclass(frozen=True)
class PlannedUtt:
    """One utterance of a plan: text, speaker and where its audio/alignment go."""

    id: str
    text: str
    speaker: Speaker
    audio: str
    sample_rate: int
    alignment: str | None = None

    def done(self) -> bool:
        return Path(self.audio).is_file() and (self.alignment is None or Path(self.alignment).is_file())


@dataclass(frozen=True)
class Plan:
    """A corpus to generate, decided by its config alone (built by :mod:`speechunits.data.synth.layouts`)."""

    layout: str
    out: Path
    root: Path
    """The corpus root the command prints (``OUT/LibriSpeech``, ...)."""
    config: dict[str, Any]
    """The effective config: its hash in ``provenance.json`` makes a rerun a no-op."""
    options: dict[str, str]
    """The synth-corpus options (destination -> value) that rebuild this plan: local jobs get them."""
    utts: list[PlannedUtt]
    speakers: list[Speaker]
    write_files: Callable[[list[PlannedUtt]], None]
    """Writes the layout's transcript/metadata files for the utterances made (in plan order)."""

    @property
    def marker(self) -> Path:
        """``OUT/.synth/<layout>``: plan, shard records, bad lists, logs and provenance."""
        return self.out / ".synth" / self.layout


# ------------------------------------------------------------------ before any shard
def check_tools(speakers: Iterable[Speaker]) -> None:
    """ExternalToolError unless festival with the speakers' voices (and espeak-ng if needed) is installed."""
    speakers = list(speakers)
    voices = sorted({s.voice for s in speakers if s.engine == "festival"})
    if voices:
        check_festival(voices)
    if any(s.engine == "espeak" for s in speakers):
        espeak_binary()


def claim(plan: Plan) -> None:
    """Record which config this output directory is being generated for.

    Resuming relies on "files that exist are finished utterances of *this* plan"; a
    directory started (or finished) under another config would mix stale utterances in, so
    it is refused instead of silently reused.
    """
    path = plan.marker / "plan.json"
    wanted = json.loads(json.dumps(plan.config, sort_keys=True))
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            found = None
        if found != wanted:
            raise ConfigError(
                plan.out, f"already holds a {plan.layout} corpus generated with a different config ({found}); "
                          f"requested {wanted}. Use another --out or delete {plan.out} first",
            )
        return
    atomic_write_json(path, wanted)


# ------------------------------------------------------------------ the runner's output
class SynthShard:
    """One shard's utterances as the runner's :class:`~speechunits.jobs.ShardWriter`.

    Every file is written atomically as it is made, so there is nothing to finish or to keep
    on abort: the finished utterances are those whose files exist.
    """

    def __init__(self, utts: Sequence[PlannedUtt]) -> None:
        self.utts = list(utts)

    def finished_ids(self) -> set[str]:
        return {u.id for u in self.utts if u.done()}

    def finish(self) -> None:
        pass

    def abort(self, exc: BaseException) -> None:
        pass

    def write(self, utt: PlannedUtt, wav: np.ndarray, sample_rate: int,
              tiers: Mapping[str, Sequence[Interval]] | None = None, last_end: float = 0.0) -> float:
        """Resample, write the audio, then the alignment (so 'done' means both exist); returns seconds."""
        wav = resample(wav, sample_rate, utt.sample_rate)
        write_audio(utt.audio, wav, utt.sample_rate)
        duration = len(wav) / utt.sample_rate
        if utt.alignment is not None and tiers is not None:
            write_textgrid(utt.alignment, tiers, xmax=max(duration, last_end))
        return duration


class CorpusOutput:
    """A plan's corpus as the runner's :class:`~speechunits.jobs.ShardOutput` (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.where = str(plan.root)

    def open_shard(self, job: int, nj: int, items: Sequence[PlannedUtt], **options: Any) -> SynthShard:
        return SynthShard(items)

    def shard_files(self, job: int) -> list[Path]:
        return []  # the audio of an utterance is the same under any --nj: never deleted

    def shard_in_place(self, job: int) -> bool:
        return True  # no shard files; the merge's accounting checks every utterance's files

    def merge(self, nj: int) -> list[str]:
        """Layout files, ``speakers.json`` and ``utterances.json`` for the utterances made; their ids."""
        plan = self.plan
        made = [u for u in plan.utts if u.done()]
        plan.write_files(made)
        unique = {s.id: s for s in plan.speakers}
        atomic_write_json(plan.marker / "speakers.json", [s.to_dict() for s in unique.values()])
        atomic_write_json(plan.marker / "utterances.json",
                          {u.id: {"text": u.text, "speaker": u.speaker.to_dict()} for u in made})
        return [u.id for u in made]


# ------------------------------------------------------------------ one shard
def _bad_line(utt: PlannedUtt, err: Exception) -> str:
    """``id<TAB>reason`` on one line (festival's message may span several)."""
    return f"{utt.id}\t{' '.join(str(err).split())}"


def synthesize_chunk(shard: SynthShard, chunk: Sequence[PlannedUtt]) -> tuple[float, list[str]]:
    """Synthesize and write a chunk: festival utterances in ONE festival process, espeak ones one by one.

    Returns (audio seconds written, ``id<TAB>reason`` lines of the utterances that failed).
    """
    seconds, bad = 0.0, []
    fest = [u for u in chunk if u.speaker.engine == "festival"]
    results = synthesize_each([FestivalRequest(f"u{i:05d}", u.text, u.speaker) for i, u in enumerate(fest)])
    for utt, res in zip(fest, results):
        if isinstance(res, ExternalToolError):
            bad.append(_bad_line(utt, res))
        else:
            seconds += shard.write(utt, res.wav, res.sample_rate, res.tiers(), res.phones[-1].end)
    espeak = [u for u in chunk if u.speaker.engine == "espeak"]
    if espeak:
        espeak_binary()  # a missing espeak-ng is the run's error, not an utterance's
    for utt in espeak:
        try:
            wav, sr = synthesize_espeak(utt.text, utt.speaker)
        except ExternalToolError as err:
            bad.append(_bad_line(utt, err))
            continue
        seconds += shard.write(utt, wav, sr)
    return seconds, bad


def run_shard(runner: JobRunner[SynthShard], job: int) -> None:
    """Synthesize the utterances of shard ``job`` whose files do not exist yet, chunk by chunk."""
    with runner.open_shard(job) as shard:
        size = 1 if shard.delay > 0 else MAX_CHUNK  # the test hook kills a job between utterances
        for start in range(0, len(shard.todo), size):
            chunk = shard.todo[start : start + size]
            seconds, bad = synthesize_chunk(shard.writer, chunk)
            shard.progress(len(chunk) - len(bad), bad, seconds)
            shard.pause()


# ------------------------------------------------------------------ the command
def synth_runner(plan: Plan, nj: int) -> JobRunner[SynthShard]:
    """The job runner of a plan: records, bad lists, logs and provenance in ``OUT/.synth/<layout>``."""
    return JobRunner(VERB, items=plan.utts, out=plan.marker, nj=nj, output=CorpusOutput(plan), effective=plan.config)


def run_plan(plan: Plan, args: argparse.Namespace) -> int:
    """``synth-corpus`` on a plan: a complete corpus returns at once; else claim the directory, run, merge.

    ``args`` carry the job options (``--nj``, ``--job``, ``--cmd``, ``--threads``) and the
    options that rebuild the plan (local jobs are started with them). Returns the exit status.
    """
    check_job_args(args)
    runner = synth_runner(plan, args.nj)
    if not runner.complete():
        check_tools(plan.speakers)
        claim(plan)
        limit_threads(args.threads)
    return runner.run(lambda job: run_shard(runner, job), args, add_arguments, empty_ok=False)


def synthesize(plan: Plan, *, nj: int = 1) -> Path:
    """Generate a plan's corpus with ``nj`` jobs (``nj=1``: in this process); returns its root.

    The library path of :func:`run_plan`: the same runner and options as the command, so
    local jobs rebuild the plan from ``plan.options``. Raises ExternalToolError if a job failed.
    """
    parser = argparse.ArgumentParser(prog=VERB)
    add_arguments(parser)
    argv = [x for dest, value in plan.options.items() for x in (f"--{dest.replace('_', '-')}", value)]
    args = parser.parse_args([*argv, "--nj", str(nj)])
    if run_plan(plan, args) != 0:
        raise ExternalToolError(plan.marker / "log", f"{VERB}: a local job failed (see the messages above and its "
                                                     "log here); call again to resume")
    return plan.root


__all__ = [
    "MAX_CHUNK",
    "CorpusOutput",
    "Plan",
    "PlannedUtt",
    "SynthShard",
    "check_tools",
    "claim",
    "run_plan",
    "run_shard",
    "synth_runner",
    "synthesize",
    "synthesize_chunk",
]
