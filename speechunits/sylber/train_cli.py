"""``speechunits train-sylber``: Sylber stage 1 / stage 2 training (plain or under torchrun).

Example::

    speechunits train-sylber --config recipes/conf/sylber_stage1.yaml --out-dir exp/sylber/stage1 \\
        task.data=data/train task.segments=exp/sylber/bootstrap/train task.init=hubert_base.pt
    torchrun --nproc_per_node 4 -m speechunits train-sylber --config ... (same arguments)

At the end rank 0 writes ``model.pt`` (the student) and ``teacher.pt`` beside the training
checkpoints; ``model.pt`` is what ``speechunits segment`` / ``Segmenter`` load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.io_utils import sha256_file
from speechunits.sylber.train_task import SylberTask
from speechunits.train.launch import add_train_arguments, config_from_args, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then export the student and teacher models for inference."""
    config = config_from_args(args)
    init = config.task.get("init")
    if init and Path(str(init)).is_file():
        # the init checkpoint's content, not just its path, is part of the run's identity:
        # resuming onto a different stage-1 model is refused (see the Trainer's config check)
        config.task["init_sha256"] = sha256_file(str(init))
    result = run_training(SylberTask, config, device=args.device)
    out = Path(config.out_dir)
    if not result.dist.is_main:
        return 0
    task: SylberTask = result.task  # type: ignore[assignment]
    exports = [("model.pt", "student")] + ([("teacher.pt", "teacher")] if task.teacher is not None else [])
    if result.start_step == result.step:
        # resumed a finished run: an exported model already is this state; rewriting it would
        # make every later recipe stage look out of date. One a kill kept from being written
        # (between model.pt and teacher.pt) is written now.
        exports = [(name, which) for name, which in exports if not (out / name).is_file()]
        if not exports:
            print(f"train-sylber: already at step {result.step}; keeping {out / 'model.pt'}", file=sys.stderr)
            return 0
    for name, which in exports:
        task.export(out / name, which)
    print(f"train-sylber: step {result.step}; model at {out / 'model.pt'}", file=sys.stderr)
    return 0
