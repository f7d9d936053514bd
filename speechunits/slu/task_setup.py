"""What every trained task of a class-incremental run needs, whether it is a method's task or
the shared first task (:mod:`speechunits.slu.first_task`): the model builder, the Trainer
config of a task, and the per-task records (``result.json``, final checkpoint) that let a
rerun skip finished work and refuse records of another configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError
from speechunits.io_utils import read_json_record, sha256_json
from speechunits.slu.config import CILConfig, config_dict
from speechunits.slu.encoders import ENCODERS
from speechunits.slu.inputs import InputSource, encoder_arguments, make_input_source
from speechunits.slu.model import SLUModel
from speechunits.slu.objective import CoconutObjective, CoconutWeights
from speechunits.train import checkpoint as ckpt
from speechunits.train.config import TrainConfig, config_diff, config_to_dict, load_config, training_relevant

RESULT_NAME = "result.json"


def build_objective(cfg: CILConfig, vocab_size: int, weights: CoconutWeights, inputs: InputSource | None = None) -> CoconutObjective:
    """Model (encoder + decoder) with projection heads, as configured; a ``units`` encoder takes
    its codebook size from the unit sets of ``inputs`` (default: the config's input source)."""
    kind, enc_cfg = encoder_arguments(cfg.model.encoder, inputs or make_input_source(cfg.model.encoder, cfg.splits))
    encoder = ENCODERS[kind](**enc_cfg)
    m = cfg.model
    model = SLUModel(encoder, vocab_size, d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads,
                     ffn_dim=m.ffn_dim, dropout=m.dropout, max_decode_len=cfg.decode.max_len)
    return CoconutObjective(model, proj_dim=m.proj_dim, hidden_dim=m.proj_hidden, weights=weights)


def protocol_sha(cfg: CILConfig, drop: tuple[str, ...] = ()) -> str:
    """Hash of the experiment config without what does not change what is learned
    (training hyper-parameters are hashed with the Trainer config) and without ``drop``."""
    skip = ("train", "decode", "eval_valid", "splits", *drop)
    return sha256_json({k: v for k, v in config_dict(cfg).items() if k not in skip})


def train_config(cfg: CILConfig, identity: dict[str, Any], max_steps: int, task_dir: Path,
                 extra: dict[str, Any] | None = None) -> TrainConfig:
    """The Trainer config of one task: ``cfg.train`` (+ ``extra``) with run dir, step count and identity."""
    base = {"seed": cfg.seed, **cfg.train, **(extra or {}), "max_steps": max_steps, "out_dir": str(task_dir), "task": identity}
    return load_config(None, (), base=base)


def restart_if_changed(train_cfg: TrainConfig, task_dir: Path) -> None:
    """A checkpoint left by another configuration is set aside (``resume=never``: the Trainer
    moves it to ``replaced-*``) instead of refusing to resume: a changed parameter redoes
    the task; a checkpoint of the same configuration is resumed."""
    if train_cfg.resume != "auto":
        return
    found = ckpt.load_latest_valid(task_dir, map_location="cpu")
    if found is not None and config_diff(found[1]["config"], config_to_dict(train_cfg)):
        print(f"{task_dir}: checkpoints of another configuration are set aside; training this task anew", file=sys.stderr)
        train_cfg.resume = "never"


def record_hash(train_cfg: TrainConfig, **parts: Any) -> str:
    """What a task record is valid for: the training-relevant Trainer config (which holds the
    task's identity) and ``parts`` (decoding, memory settings, ...)."""
    return sha256_json({"train": training_relevant(config_to_dict(train_cfg)), **parts})


def load_result(path: Path, run_hash: str) -> dict[str, Any] | None:
    """The task record at ``path`` if it was written for ``run_hash``; else None (the task is run)."""
    stored = read_json_record(path)
    return stored if stored is not None and stored.get("config_hash") == run_hash else None


def final_weights(task_dir: Path) -> dict[str, torch.Tensor]:
    """Model state of a finished task's last valid checkpoint (where the next task starts)."""
    found = ckpt.load_latest_valid(task_dir, map_location="cpu")
    if found is None:
        raise CheckpointError(task_dir, "finished task has no loadable checkpoint")
    return found[1]["model"]
