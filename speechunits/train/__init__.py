"""The shared training loop: config, optimizers, device placement, DDP, checkpoint/resume,
EMA, schedules and logging.

See docs/training.md. Typical use from a CLI module::

    from speechunits.train import add_train_arguments, config_from_args, run_training
    run_training(MyTask, config_from_args(args))   # MyTask(config, dist) -> TrainTask
"""

from __future__ import annotations

from speechunits.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from speechunits.train.config import TrainConfig, load_config
from speechunits.train.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, is_main
from speechunits.train.ema import EMATeacher
from speechunits.train.launch import TrainResult, add_train_arguments, config_from_args, run_training
from speechunits.train.loop import Trainer, TrainTask
from speechunits.train.optim import OptimizerSpec, default_optimizer, param_groups
from speechunits.train.placement import place_task_state
from speechunits.train.rng import capture_rng_state, restore_rng_state, seed_everything
from speechunits.train.schedule import LRFactor, build_scheduler
from speechunits.train.wrap import unwrap_model

__all__ = [
    "DistInfo",
    "EMATeacher",
    "LRFactor",
    "OptimizerSpec",
    "TrainConfig",
    "TrainResult",
    "TrainTask",
    "Trainer",
    "add_train_arguments",
    "all_reduce_mean",
    "barrier",
    "build_scheduler",
    "capture_rng_state",
    "config_from_args",
    "default_optimizer",
    "init_distributed",
    "is_main",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "param_groups",
    "place_task_state",
    "restore_rng_state",
    "run_training",
    "save_checkpoint",
    "seed_everything",
    "unwrap_model",
]
