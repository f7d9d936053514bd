"""``speechunits train-hubert``: HuBERT-style masked-prediction pretraining (plain or under torchrun).

Example (iteration 1 on MFCC k-means targets, then iteration 2 on layer-4 targets)::

    speechunits frame-units --features mfcc --data data/train --out exp/hubert/targets1/train --k 100
    speechunits train-hubert --config recipes/conf/hubert_iter1.yaml --out-dir exp/hubert/iter1 \\
        task.data=data/train task.targets=exp/hubert/targets1/train
    speechunits frame-units --model exp/hubert/iter1/model.pt --layer 4 --data data/train \\
        --out exp/hubert/targets2/train --k 500
    speechunits train-hubert --config recipes/conf/hubert_iter2.yaml --out-dir exp/hubert/iter2 \\
        task.data=data/train task.targets=exp/hubert/targets2/train

At the end rank 0 writes ``model.pt``: the encoder without the pretraining heads, in the
layout :func:`speechunits.encoders.checkpoints.load_encoder` reads (``recipes/sylber.sh --init``
takes it like a real HuBERT checkpoint). Training resumes from the run's last checkpoint.
"""

from __future__ import annotations

import argparse

from speechunits.hubert.task import HubertTask
from speechunits.train.launch import add_train_arguments, config_from_args, export_model, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then export the encoder."""
    config = config_from_args(args)
    result = run_training(HubertTask, config, device=args.device)
    export_model(result, config, "model.pt", "train-hubert")
    return 0
