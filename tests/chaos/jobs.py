"""The long jobs under the chaos harness (:mod:`harness`), by name.

Every job gets small inputs (a few seconds of work) with at least one bad item where the job
has a ``bad_utts.txt``, and, where it shards, ``--nj 2`` so that the local shard jobs, the merge
and the removal of the shard files are all killed at some point. The jobs live in
``jobs_corpus.py`` (corpus jobs), ``jobs_units.py`` (unit sets, codebooks, synthesis) and
``jobs_training.py`` (training); ``JOBS`` maps names to jobs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs_corpus  # noqa: E402
import jobs_training  # noqa: E402
import jobs_units  # noqa: E402
from harness import ChaosJob  # noqa: E402

JOBS: dict[str, ChaosJob] = {job.name: job for module in (jobs_corpus, jobs_units, jobs_training)
                             for job in module.CHAOS_JOBS}
