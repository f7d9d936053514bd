"""``speechunits train-vocoder``: train a unit-to-speech (or mel) vocoder with the shared Trainer.

Example::

    speechunits train-vocoder --config recipes/conf/vocoder_hifigan_v1.yaml --out-dir exp/vocoder \\
        task.train=exp/units/train task.valid=exp/units/dev [task.f0=exp/f0/train]
    torchrun --nproc_per_node 4 -m speechunits train-vocoder ... (same arguments)

At the end rank 0 writes ``<out_dir>/vocoder.pt`` (:func:`~speechunits.vocoder.model.save_vocoder`),
which ``speechunits synthesize --model`` loads. Resuming a finished run keeps the file.
"""

from __future__ import annotations

import argparse

from speechunits.train.launch import add_train_arguments, config_from_args, export_model, run_training
from speechunits.vocoder.train_task import VocoderTask

MODEL_NAME = "vocoder.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then export the model for inference."""
    config = config_from_args(args)
    export_model(run_training(VocoderTask, config, device=args.device), config, MODEL_NAME, "train-vocoder")
    return 0
