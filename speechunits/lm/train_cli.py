"""``speechunits train-lm``: train a unit LM (decoder-only Transformer) with the shared Trainer.

Example::

    speechunits train-lm --config lm/conf/lm_small.yaml --out-dir exp/lm/sylber --token-budget 1000000 \\
        task.train=exp/lm/sylber/packed/train task.valid=exp/lm/sylber/packed/dev
    torchrun --nproc_per_node 4 -m speechunits train-lm ... (same arguments)

At the end rank 0 writes ``<out_dir>/model.pt`` (:func:`~speechunits.lm.model_io.save_lm`),
which ``speechunits lm-score --model`` loads. Resuming a finished run keeps the file.
"""

from __future__ import annotations

import argparse
import os
import sys

from speechunits.errors import ConfigError
from speechunits.lm.task import LMTask, steps_for_budget
from speechunits.train.launch import add_train_arguments, config_from_args, export_model, run_training

MODEL_NAME = "model.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)
    parser.add_argument("--token-budget", type=int, default=None,
                        help="train on about this many target tokens in all: sets max_steps from the data's average "
                             "real tokens per step (equal budgets across tokenizers)")


def run(args: argparse.Namespace) -> int:
    """Train, then export the model for scoring and sampling."""
    config = config_from_args(args)
    if args.token_budget is not None:
        if args.token_budget < 1:
            raise ConfigError(None, f"--token-budget must be >= 1, got {args.token_budget}")
        config.max_steps = steps_for_budget(config, args.token_budget, int(os.environ.get("WORLD_SIZE", "1")))
        print(f"train-lm: --token-budget {args.token_budget} -> max_steps={config.max_steps}", file=sys.stderr)
    export_model(run_training(LMTask, config, device=args.device), config, MODEL_NAME, "train-lm")
    return 0
