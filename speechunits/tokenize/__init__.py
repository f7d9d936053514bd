"""Sharded, resumable corpus tokenization with a Sylber model (``speechunits tokenize``).

:mod:`speechunits.tokenize.job` holds one job's work (:func:`run_job`),
:mod:`speechunits.tokenize.overlap` the worker thread that overlaps segmentation with the next
forward pass, :mod:`speechunits.tokenize.given` the spans of ``--segments UNIT_DIR`` (another unit
set's segments pooled instead of greedy segmentation), :mod:`speechunits.tokenize.tokenize_cli` the command. Shards, resume, local jobs,
merge and provenance are the job runner's (:mod:`speechunits.jobs`).
"""

from __future__ import annotations

from speechunits.tokenize.job import TokenizeSettings, run_job
from speechunits.tokenize.overlap import OverlapWorker

__all__ = ["OverlapWorker", "TokenizeSettings", "run_job"]
