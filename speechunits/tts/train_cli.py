"""``speechunits train-tts``: train Capacitron (or a plain Tacotron2) with the shared Trainer.

Example::

    speechunits train-tts --config recipes/conf/tts_capacitron_vt.yaml --out-dir exp/tts/vt150 \\
        task.train=data/train task.valid=data/valid task.train_symbols=exp/tts/phonemes/train.jsonl
    torchrun --nproc_per_node 4 -m speechunits train-tts ... (same arguments)

At the end rank 0 writes ``<out_dir>/model.pt`` (:func:`~speechunits.tts.model_io.save_tts`),
which ``speechunits tts-synthesize --model`` loads. Resuming a finished run keeps the file.
"""

from __future__ import annotations

import argparse

from speechunits.train.launch import add_train_arguments, config_from_args, export_model, run_training
from speechunits.tts.task import TTSTask

MODEL_NAME = "model.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training options (config file, run directory, resume, device, KEY=VALUE overrides)."""
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then export the model for inference."""
    config = config_from_args(args)
    export_model(run_training(TTSTask, config, device=args.device), config, MODEL_NAME, "train-tts")
    return 0
