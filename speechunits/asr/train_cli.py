"""``speechunits train-judge``: train the CTC character judge on the shared Trainer.

Example::

    speechunits train-judge --config recipes/conf/judge_blstm.yaml --out-dir exp/judge \\
        task.train=data/train-clean-100 task.valid=data/dev-clean

At the end rank 0 writes ``<out_dir>/judge.pt`` (format ``speechunits.asr-judge/1``), what
``speechunits judge`` and :func:`speechunits.asr.load_judge` read. Resumes like every
Trainer run (``--resume auto``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.asr.task import JudgeTask
from speechunits.train.launch import add_train_arguments, config_from_args, run_training

JUDGE_NAME = "judge.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train (or resume), then export ``judge.pt``."""
    config = config_from_args(args)
    result = run_training(JudgeTask, config, device=args.device)
    if not result.dist.is_main:
        return 0
    out = Path(config.out_dir) / JUDGE_NAME
    if result.step < config.max_steps:
        print(f"train-judge: stopped at step {result.step} of {config.max_steps}; no {JUDGE_NAME} yet", file=sys.stderr)
    elif result.start_step == result.step and out.is_file():
        print(f"train-judge: already at step {result.step}; keeping {out}", file=sys.stderr)
    else:
        task: JudgeTask = result.task  # type: ignore[assignment]
        task.export(out, {"step": result.step})
        print(f"train-judge: step {result.step}; judge at {out}", file=sys.stderr)
    return 0
