"""The shared first task (``first_task.shared=true``): task 0 trained once per seed, with
cross-entropy only, into ``<out>/task0/seed<k>/``; every non-joint run of that seed starts
task 1 from its weights and takes its test/valid scores as its own task-0 row.

Why: with a fixed epoch budget the methods did not all learn task 0 (cross-entropy alone was
at 12% after 10 epochs while COCONUT's extra losses were at 60%), so part of a method's lead
was faster first-task learning, not less forgetting. Sharing one task-0 model removes that
from the comparison; the price is that COCONUT's MM loss does not act on task 0.

With ``first_task.until_plateau`` the task is trained one epoch at a time (constant LR after
warmup) and scored after each epoch on the *valid* examples of the task-0 classes; training
stops when the best accuracy has not improved by ``min_delta`` for ``patience`` epochs (after
at least ``min_epochs``), or after ``max_epochs``. The history goes to ``plateau.json`` after every epoch, so a killed run
resumes at the last finished epoch (from its checkpoint) without redoing it. Concurrent runs
of one seed (``recipes/slu_cil.sh --nj``) take a lock: one trains, the others wait and reuse.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from speechunits.io_utils import atomic_write_json, exclusive_lock
from speechunits.slu.config import CILConfig
from speechunits.slu.evaluate import evaluate
from speechunits.slu.experiment import CILData
from speechunits.slu.objective import CoconutWeights
from speechunits.slu.results import json_safe
from speechunits.slu.task_setup import (RESULT_NAME, build_objective, final_weights, load_result, protocol_sha,
                                        record_hash, restart_if_changed, train_config)
from speechunits.slu.inputs import InputSource
from speechunits.slu.train_task import SLUTrainTask
from speechunits.train.distributed import DistInfo
from speechunits.train.loop import Trainer

HISTORY_NAME = "plateau.json"


@dataclass
class FirstTask:
    """A finished shared task 0."""

    dir: Path
    config_hash: str
    test: dict[str, Any]
    valid: dict[str, Any] | None
    history: list[dict[str, Any]]

    def weights(self) -> dict[str, torch.Tensor]:
        return final_weights(self.dir)


def first_task_dir(out: Path, seed: int) -> Path:
    return out / "task0" / f"seed{seed}"


def ce_only(cfg: CILConfig) -> CoconutWeights:
    """The configured weights with every loss but cross-entropy off."""
    return CoconutWeights(**{**dict(cfg.losses), "nspt": 0.0, "mm": 0.0, "kd": 0.0})


def plateaued(history: list[dict[str, Any]], patience: int, min_delta: float, min_epochs: int = 0) -> bool:
    """True when at least ``min_epochs`` epochs were trained and the last ``patience`` of them
    brought no valid accuracy above the best of the earlier ones by more than ``min_delta``."""
    if len(history) <= patience or len(history) < min_epochs:
        return False
    accs = [float(h["valid_accuracy"]) for h in history]
    return max(accs[-patience:]) <= max(accs[:-patience]) + min_delta


def ensure_first_task(cfg: CILConfig, data: CILData, audio: InputSource, out: Path, dist: DistInfo) -> FirstTask | None:
    """The shared task 0 of ``cfg.seed``: read when finished, trained otherwise; ``None`` when
    training stopped early through ``train.stop_after`` (rerun to resume)."""
    task_dir = first_task_dir(out, cfg.seed)
    # under DDP every rank trains it together (the recipe runs one launch at a time): no lock
    lock = exclusive_lock(task_dir.parent / f"seed{cfg.seed}.lock") if dist.world_size == 1 else contextlib.nullcontext()
    with lock:
        return _ensure(cfg, data, audio, task_dir, dist)


def _ensure(cfg: CILConfig, data: CILData, audio: InputSource, task_dir: Path, dist: DistInfo) -> FirstTask | None:
    ft = cfg.first_task
    classes = set(data.split.tasks[0])
    examples = [ex for ex in data.train if ex.label in classes]
    steps_per_epoch = -(-len(examples) // cfg.batch_size)
    epochs = ft.max_epochs if ft.until_plateau else (ft.epochs or cfg.epochs_per_task)
    identity = {"method": "first_task", "task": 0, "classes": list(data.split.tasks[0]), "num_examples": len(examples),
                "first_task": asdict(ft), "protocol_sha": protocol_sha(cfg, drop=("losses", "memory", "epochs_per_task",
                                                                              "joint_epochs", "first_task"))}
    extra = {"schedule": "constant"} if ft.until_plateau else None
    train_cfg = train_config(cfg, identity, epochs * steps_per_epoch, task_dir, extra)
    run_hash = record_hash(train_cfg, decode=asdict(cfg.decode))
    done = load_result(task_dir / RESULT_NAME, run_hash)
    if done is not None:
        print(f"[first task] seed {cfg.seed}: complete, reused ({task_dir})", file=sys.stderr)
        return FirstTask(task_dir, run_hash, done["test"], done.get("valid"), done.get("history", []))

    print(f"[first task] seed {cfg.seed}: {len(classes)} classes, {len(examples)} examples, "
          + (f"until the valid accuracy plateaus (at most {epochs} epochs)" if ft.until_plateau else f"{epochs} epochs")
          + f" -> {task_dir}", file=sys.stderr)
    device = dist.device
    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, data.tokenizer.vocab_size, ce_only(cfg), audio).to(device)
    task = SLUTrainTask(objective, examples, set(), data.tokenizer, data.class_index, audio, cfg.batch_size,
                        seed=cfg.seed * 1000, dist=dist)
    restart_if_changed(train_cfg, task_dir)
    valid0 = [ex for ex in data.valid if ex.label in classes]
    test0 = [ex for ex in data.test if ex.label in classes]
    history: list[dict[str, Any]] = []
    valid_eval = None
    entities = cfg.targets == "entities"
    trained_here = False  # a Trainer ran (or resumed) in this call: the objective holds the final weights
    if ft.until_plateau:
        history = _read_history(task_dir / HISTORY_NAME, run_hash)
        while len(history) < epochs and not plateaued(history, ft.patience, ft.min_delta, ft.min_epochs):
            end = (len(history) + 1) * steps_per_epoch
            epoch_cfg = copy.copy(train_cfg)
            epoch_cfg.stop_after = end if train_cfg.stop_after is None else min(end, train_cfg.stop_after)
            trainer = Trainer(task, epoch_cfg, dist=dist)
            trainer.fit()
            epoch_cfg.resume = train_cfg.resume = "auto"  # later epochs resume this run's checkpoints
            trained_here = True
            if trainer.step < end:
                return None
            valid_eval = evaluate(objective.model, valid0, data.tokenizer, data.split, audio, cfg.decode, device,
                                  desc=f"valid epoch {len(history) + 1}", entities=entities)
            history.append({"epoch": len(history) + 1, "step": trainer.step, "valid_accuracy": valid_eval["accuracy"]})
            print(f"[first task] epoch {len(history)}: valid accuracy {valid_eval['accuracy']:.4f}", file=sys.stderr)
            if dist.is_main:
                atomic_write_json(task_dir / HISTORY_NAME, {"config_hash": run_hash, "history": history})
    else:
        trainer = Trainer(task, train_cfg, dist=dist)
        trainer.fit()
        trained_here = True
        if trainer.step < train_cfg.max_steps:
            return None
    model = objective.model
    if not trained_here:  # a plateau found in plateau.json: its last checkpoint was never loaded here
        objective.load_state_dict(final_weights(task_dir))
    if valid_eval is None:
        valid_eval = evaluate(model, valid0, data.tokenizer, data.split, audio, cfg.decode, device, desc="valid task0", entities=entities) if valid0 else None
    test_eval = evaluate(model, test0, data.tokenizer, data.split, audio, cfg.decode, device, desc="test task0", entities=entities)
    print(f"[first task] seed {cfg.seed}: test accuracy {test_eval['accuracy']:.4f} after "
          f"{len(history) or epochs} epochs", file=sys.stderr)
    if dist.is_main:
        atomic_write_json(task_dir / RESULT_NAME, json_safe({"config_hash": run_hash, "classes": sorted(classes),
                                                             "test": test_eval, "valid": valid_eval, "history": history,
                                                             "epochs": len(history) or epochs}))
    return FirstTask(task_dir, run_hash, test_eval, valid_eval, history)


def _read_history(path: Path, run_hash: str) -> list[dict[str, Any]]:
    """The per-epoch valid accuracies of an interrupted plateau run of this configuration."""
    stored = load_result(path, run_hash)
    return list(stored["history"]) if stored else []
