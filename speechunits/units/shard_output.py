"""The unit-set output of the sharded-job runner: what tokenize, bootstrap-segments and frame-units write.

:mod:`speechunits.jobs` runs shards, keeps their records and checks the accounting; it does
not know unit sets. This module is the :class:`~speechunits.jobs.ShardOutput` that does:

* **A shard** is written through ``UnitSetWriter(OUT, job=J, nj=N, resume=True)``: every
  finished utterance is appended to ``units.J.partial.jsonl`` at once (embedding rows to
  ``embeddings/shard.J.partial.raw`` first), so a job killed at any point, SIGKILL included,
  loses at most the utterances in flight and its rerun skips the ones already written.
  Finishing the shard turns the partial files into ``units.J.jsonl`` (+ ``meta.J.json``,
  ``embeddings/index.J.json``).
* **Audio paths** are stored relative to ``audio_root``, the deepest directory holding all of
  the corpus's audio files (:func:`~speechunits.data.utterance.common_audio_dir`), declared once
  in ``meta.json``: moving the corpus means editing that one line.
* **The merge** is :func:`~speechunits.units.writer.merge_shards` (every line validated); the
  ids it reports are read back from the merged ``units.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechunits.data.utterance import Utterance, common_audio_dir
from speechunits.jobs import JobRunner
from speechunits.units.reader import iter_unit_lines
from speechunits.units.meta import UNITS_NAME
from speechunits.units.writer import UnitSetWriter, merge_shards, shard_paths, shard_units_name


class UnitShardWriter(UnitSetWriter):
    """A resumable unit-set shard as the runner's :class:`~speechunits.jobs.ShardWriter`: ``add`` records to it."""

    def finished_ids(self) -> set[str]:
        return set(self.ids)

    def finish(self) -> None:
        self.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        self.__exit__(type(exc), exc, exc.__traceback__)


class UnitSetOutput:
    """A unit set in ``out``, written in resumable shards and merged by :func:`merge_shards`."""

    where = UNITS_NAME

    def __init__(self, out: Path, audio_root: str | None) -> None:
        self.out = Path(out)
        self.audio_root = audio_root
        self.audio_seconds: float | None = None
        """Seconds of audio of the merged set (its records' ``num_samples / sample_rate``), set by :meth:`merge`."""

    def open_shard(self, job: int, nj: int, items: Sequence[Any], **writer_kwargs: Any) -> UnitShardWriter:
        """``writer_kwargs``: kind, sample_rate, hop, producer, ... of :class:`UnitSetWriter`."""
        writer = UnitShardWriter(self.out, job=job, nj=nj, resume=True, audio_root=self.audio_root, **writer_kwargs)
        writer.__enter__()
        return writer

    def shard_files(self, job: int) -> list[Path]:
        return shard_paths(self.out, job)

    def shard_in_place(self, job: int) -> bool:
        return (self.out / shard_units_name(job)).is_file()

    def merge(self, nj: int) -> list[str]:
        self.audio_seconds = merge_shards(self.out, nj).seconds
        return [json.loads(text)["id"] for _n, text in iter_unit_lines(self.out / UNITS_NAME)]


def unit_set_runner(verb: str, *, utts: Sequence[Utterance], out: Path, nj: int, effective: dict[str, Any],
                    inputs: Sequence[Path], shard_config: Any = None, force: bool = False,
                    progress: bool = True) -> JobRunner[UnitShardWriter]:
    """The job runner of a command that writes the unit set ``out`` from the corpus ``utts``.

    ``runner.open_shard(job, kind=..., sample_rate=..., hop=..., producer=...)`` opens shard
    ``job``'s :class:`UnitShardWriter`; the other arguments are :class:`~speechunits.jobs.JobRunner`'s.
    """
    return JobRunner(verb, items=utts, out=out, nj=nj, output=UnitSetOutput(out, common_audio_dir(list(utts))),
                     effective=effective, inputs=inputs, shard_config=shard_config, force=force, progress=progress)


__all__ = ["UnitSetOutput", "UnitShardWriter", "unit_set_runner"]
