"""Chaos tests (issue 17): every long job, SIGKILLed at seeded random points and resumed, ends
with the uninterrupted run's output, byte for byte, and leaves no temporary behind.

CI runs ``KILLS`` kills per job (one seed); ``benchmarks/chaos.py`` runs 50 per job and prints
the table. See :mod:`harness` for what is killed and compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import run_chaos  # noqa: E402
from jobs import JOBS  # noqa: E402

KILLS = 2


@pytest.mark.parametrize("name", [pytest.param(name, marks=[getattr(pytest.mark, m) for m in JOBS[name].markers])
                                  for name in sorted(JOBS)])
def test_killed_and_resumed_job_matches_uninterrupted_run(name: str, tmp_path: Path) -> None:
    job = JOBS[name]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    job.build(inputs)
    report = run_chaos(job, inputs, tmp_path / "work", kills=KILLS, seed=0)
    assert report.ok, report.summary()
    assert report.kills == KILLS, report.summary()
