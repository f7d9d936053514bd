"""``speechunits train-lm``: train a unit LM (decoder-only Transformer) with the shared Trainer.

Example::

    speechunits train-lm --config lm/conf/lm_tiny.yaml --out-dir exp/lm/tiny \\
        task.train=exp/lm/data/train task.valid=exp/lm/data/dev
    torchrun --nproc_per_node 4 -m speechunits train-lm ... (same arguments)

At the end rank 0 writes ``<out_dir>/model.pt`` (:func:`~speechunits.lm.model_io.save_lm`),
which ``speechunits lm-score --model`` loads. Resuming a finished run keeps the file.
"""

from __future__ import annotations

import argparse

from speechunits.lm.task import LMTask
from speechunits.train.launch import add_train_arguments, config_from_args, export_model, run_training

MODEL_NAME = "model.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then export the model for scoring and sampling."""
    config = config_from_args(args)
    export_model(run_training(LMTask, config, device=args.device), config, MODEL_NAME, "train-lm")
    return 0
