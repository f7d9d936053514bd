"""Chaos jobs that train: train-sylber, slu-cil, train-vocoder, train-tts, train-lm. See jobs.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import ChaosJob  # noqa: E402

CHAOS_JOBS: list[ChaosJob] = []
