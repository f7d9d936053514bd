"""The class-incremental SLU task loop: train a method through a sequence of tasks and score it.

For each task ``t`` of the benchmark (``fsc-6``, ``slurp-3``, ... or the training classes by
frequency cut into ``num_tasks``):

1. data = training examples of task ``t``'s classes + the rehearsal memory (methods with one);
2. the model continues from task ``t-1``'s final weights (nothing is re-initialised); for
   methods with NSPT or seq-KD the previous-task model is frozen as teacher, and for seq-KD
   its hypotheses on the memory utterances are decoded once, as extra targets;
3. training with the shared :class:`~speechunits.train.Trainer` into
   ``<out>/<method>/task<t>/`` (checkpoints, logs; resumable: ``resume=auto``; checkpoints
   of another configuration are set aside and the task is trained anew);
4. evaluation on the test (and valid) examples of all classes seen so far
   (:func:`~speechunits.slu.evaluate.evaluate`): decoding (greedy, or beam search when
   ``decode.beam_size > 1``), intent = the text before the first ``_SEP``, one row of the
   accuracy matrix (:func:`~speechunits.slu.metrics.accuracy_row`), and the WER of the
   transcript part;
5. the memory takes the new classes (random or iCaRL herding on mean-pooled encoder
   outputs) and is trimmed to the budget;
6. ``task<t>/result.json`` is written last: a rerun skips every task that has one for the
   same configuration.

At the end ``<out>/<method>/results.json`` holds the matrix, AIA, last accuracy, BWT,
forgetting and WER, with ``RESULTS.md`` and ``accuracy.png`` (:mod:`speechunits.slu.results`).
The tokenizer and the class split are shared by all methods of an experiment:
``<out>/tokenizer/bpe.model`` and ``<out>/split.json`` (built once, from the training split of
all classes, by :func:`~speechunits.slu.experiment.prepare_experiment`). The configuration
schema is :mod:`speechunits.slu.config`.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError
from speechunits.io_utils import atomic_write_json, sha256_json
from speechunits.slu.config import CILConfig, config_dict
from speechunits.slu.encoders import ENCODERS
from speechunits.slu.evaluate import decode_examples, evaluate, pooled_features
from speechunits.slu.experiment import CILData, prepare_experiment
from speechunits.slu.memory import RehearsalMemory
from speechunits.slu.model import SLUModel
from speechunits.slu.objective import CoconutObjective, CoconutWeights
from speechunits.slu.results import float_or_nan, json_safe, summarize_method, write_method_results
from speechunits.slu.tasks import ClassIncrementalSplit
from speechunits.slu.train_task import AudioCache, MethodSpec, SLUTrainTask, method_spec
from speechunits.train import checkpoint as ckpt
from speechunits.train.config import TrainConfig, config_diff, config_to_dict, load_config, training_relevant
from speechunits.train.distributed import (DistInfo, assert_same_on_ranks, barrier, broadcast_object, init_distributed,
                                            shutdown_distributed)
from speechunits.train.loop import Trainer

PathLike = str | os.PathLike[str]

RESULT_NAME = "result.json"


# --------------------------------------------------------------------------- one task's model and Trainer config
def build_objective(cfg: CILConfig, vocab_size: int, weights: CoconutWeights) -> CoconutObjective:
    """Model (encoder + decoder) with projection heads, as configured."""
    enc_cfg = dict(cfg.model.encoder)
    kind = enc_cfg.pop("type")
    encoder = ENCODERS[kind](**enc_cfg)
    m = cfg.model
    model = SLUModel(encoder, vocab_size, d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads,
                     ffn_dim=m.ffn_dim, dropout=m.dropout, max_decode_len=cfg.decode.max_len)
    return CoconutObjective(model, proj_dim=m.proj_dim, hidden_dim=m.proj_hidden, weights=weights)


def coconut_weights(cfg: CILConfig, method: MethodSpec) -> CoconutWeights:
    """The configured loss weights, with the losses ``method`` does not use set to 0."""
    return method.weights(CoconutWeights(**dict(cfg.losses)))


def task_train_config(cfg: CILConfig, method: MethodSpec, t: int, classes: Sequence[str], num_examples: int,
                      memory_ids: Sequence[str], task_dir: Path) -> TrainConfig:
    """The Trainer config of task ``t``: ``cfg.train`` + run dir, step count and identity."""
    epochs = (cfg.joint_epochs or cfg.epochs_per_task) if method.joint else cfg.epochs_per_task
    steps = epochs * -(-num_examples // cfg.batch_size)
    protocol = {k: v for k, v in config_dict(cfg).items() if k not in ("train", "decode", "eval_valid", "splits")}
    identity = {"method": method.name, "task": t, "classes": list(classes), "num_examples": num_examples,
                "memory_sha": sha256_json(sorted(memory_ids)), "protocol_sha": sha256_json(protocol)}
    base = {"seed": cfg.seed, **cfg.train, "max_steps": steps, "out_dir": str(task_dir), "task": identity}
    return load_config(None, (), base=base)


# --------------------------------------------------------------------------- the task loop
def run_protocol(
    cfg: CILConfig,
    method_name: str,
    data_dir: PathLike,
    out_dir: PathLike,
    device: str | None = None,
    data: CILData | None = None,
    audio: AudioCache | None = None,
) -> dict[str, Any]:
    """Run (or resume) one method through every task; returns the contents of ``results.json``
    (``{}`` when training stopped early through ``train.stop_after``: rerun to resume)."""
    method = method_spec(method_name)
    out = Path(out_dir)
    dist = init_distributed(device)
    try:
        return _run(cfg, method, data_dir, out, dist, data, audio)
    finally:
        shutdown_distributed()


def _run(cfg: CILConfig, method: MethodSpec, data_dir: PathLike, out: Path, dist: DistInfo,
         data: CILData | None, audio: AudioCache | None) -> dict[str, Any]:
    data = data or _prepare_rank0_first(cfg, data_dir, out, dist)
    audio = audio or AudioCache()
    split = data.split
    run_split = ClassIncrementalSplit(f"{split.name}-joint", (tuple(split.classes),)) if method.joint else split
    tasks = run_split.tasks
    class_index = data.class_index
    weights = coconut_weights(cfg, method)
    method_dir = out / method.name
    budget = 0
    if method.memory:
        budget = cfg.memory.budget if cfg.memory.budget is not None else int(round(cfg.memory.fraction * len(data.train)))
    memory = RehearsalMemory(budget, selection=cfg.memory.selection, seed=cfg.seed)
    by_id = {ex.id: ex for ex in data.train}
    device = dist.device
    audio.preload(data.train + data.test + data.valid)

    rows: list[list[float]] = []
    valid_rows: list[list[float]] = []
    last_eval: dict[str, Any] = {}
    prev_weights: dict[str, torch.Tensor] | None = None
    for t, classes in enumerate(tasks):
        task_dir = method_dir / f"task{t}"
        new = [ex for ex in data.train if ex.label in set(classes)]
        mem_ids = [str(k) for k in memory.keys()]
        examples = new + [by_id[k] for k in mem_ids]
        train_cfg = task_train_config(cfg, method, t, classes, len(examples), mem_ids, task_dir)
        run_hash = _record_hash(cfg, train_cfg)
        result_path = task_dir / RESULT_NAME
        done = _load_result(result_path, run_hash)
        if done is not None:
            print(f"[{method.name}] task {t}: complete, skipped ({result_path})", file=sys.stderr)
            memory.load_state_dict(done["memory"])
            rows.append([float_or_nan(v) for v in done["test"]["row"]])
            if done.get("valid"):
                valid_rows.append([float_or_nan(v) for v in done["valid"]["row"]])
            last_eval = done["test"]
            prev_weights = None if t + 1 == len(tasks) else _final_weights(task_dir)
            continue

        print(f"[{method.name}] task {t}: {len(classes)} classes, {len(new)} new + {len(mem_ids)} memory examples, "
              f"{train_cfg.max_steps} steps -> {task_dir}", file=sys.stderr)
        torch.manual_seed(cfg.seed)
        objective = build_objective(cfg, data.tokenizer.vocab_size, weights)
        if t > 0:
            if prev_weights is None:
                prev_weights = _final_weights(method_dir / f"task{t - 1}")
            objective.load_state_dict(prev_weights)
        objective.to(device)
        kd_hyps = None
        if t > 0 and method.needs_teacher:
            objective.start_task()
            if weights.kd > 0 and mem_ids:
                teacher_model = objective.teacher[0]  # type: ignore[index]
                mem_examples = [by_id[k] for k in mem_ids]
                hyps = decode_examples(teacher_model, mem_examples, audio, cfg.decode, device, desc="teacher hyps") if dist.is_main else None
                kd_hyps = {ex.id: h for ex, h in zip(mem_examples, broadcast_object(hyps))}  # rank 0's, on every rank
        _check_ranks_agree(dist, method.name, t, [ex.id for ex in examples], memory, kd_hyps)
        task = SLUTrainTask(objective, examples, set(mem_ids), data.tokenizer, class_index, audio, cfg.batch_size,
                            seed=cfg.seed * 1000 + t, kd_hyps=kd_hyps, dist=dist)
        _restart_if_changed(train_cfg, task_dir)
        trainer = Trainer(task, train_cfg, dist=dist)
        trainer.fit()
        if trainer.step < train_cfg.max_steps:  # stop_after: checkpointed, resumed by the next run
            print(f"[{method.name}] task {t}: stopped at step {trainer.step}/{train_cfg.max_steps}; rerun to resume", file=sys.stderr)
            return {}

        seen = set(run_split.seen_classes(t))
        model = objective.model
        test_eval = evaluate(model, [ex for ex in data.test if ex.label in seen], data.tokenizer, run_split, audio, cfg.decode, device, desc=f"test task{t}")
        valid_eval = evaluate(model, [ex for ex in data.valid if ex.label in seen], data.tokenizer, run_split, audio, cfg.decode, device, desc=f"valid task{t}") if data.valid else None
        if method.memory and t + 1 < len(tasks):
            if dist.is_main:  # selected once, on rank 0, and broadcast: herding features may differ in the last bit per rank
                feats = pooled_features(model, new, audio, cfg.decode.batch_size, device) if memory.selection == "herding" else None
                memory.add_task([ex.id for ex in new], [ex.label for ex in new], feats)
            memory.load_state_dict(broadcast_object(memory.state_dict()))
        rows.append(test_eval["row"])
        if valid_eval:
            valid_rows.append(valid_eval["row"])
        last_eval = test_eval
        prev_weights = {k: v.detach().cpu().clone() for k, v in objective.state_dict().items()}
        print(f"[{method.name}] task {t}: test accuracy on seen classes {test_eval['accuracy']:.4f}, WER {test_eval['wer']:.4f}"
              + (f"; valid {valid_eval['accuracy']:.4f}" if valid_eval else ""), file=sys.stderr)
        if dist.is_main:
            atomic_write_json(result_path, json_safe({"config_hash": run_hash, "method": method.name, "task": t,
                                                       "classes": list(classes), "test": test_eval, "valid": valid_eval,
                                                       "memory": memory.state_dict(), "memory_counts": memory.counts()}))
    results = summarize_method(method.name, rows, valid_rows, last_eval, split)
    if dist.is_main:
        write_method_results(method_dir, results)
    return results


# --------------------------------------------------------------------------- DDP: shared files and state
def _prepare_rank0_first(cfg: CILConfig, data_dir: PathLike, out: Path, dist: DistInfo) -> CILData:
    """``prepare_experiment`` on rank 0 (which writes split.json and trains the tokenizer), then
    on the other ranks, which find both complete: only rank 0 writes."""
    if dist.is_main:
        data = prepare_experiment(cfg, data_dir, out)
        barrier()
        return data
    barrier()
    return prepare_experiment(cfg, data_dir, out)


def _check_ranks_agree(dist: DistInfo, name: str, t: int, example_ids: Sequence[str], memory: RehearsalMemory,
                       kd_hyps: dict[str, Any] | None) -> None:
    """Every rank trains task ``t`` on the same examples, rehearsal memory (random or herding
    selection) and seq-KD teacher hypotheses; raises InternalError otherwise."""
    if not dist.distributed:
        return
    assert_same_on_ranks(list(example_ids), f"the training examples of task {t}")
    assert_same_on_ranks(memory.state_dict(), f"the rehearsal memory of task {t}")
    assert_same_on_ranks(kd_hyps, f"the seq-KD teacher hypotheses of task {t}")
    if dist.is_main:
        print(f"[{name}] task {t}: {dist.world_size} ranks agree on {len(example_ids)} examples, {len(memory)} memory items, "
              f"{len(kd_hyps or {})} teacher hypotheses", file=sys.stderr)


# --------------------------------------------------------------------------- per-task checkpoints and records
def _restart_if_changed(train_cfg: TrainConfig, task_dir: Path) -> None:
    """A checkpoint left by another configuration is set aside (``resume=never``: the Trainer
    moves it to ``replaced-*``) instead of refusing to resume: a changed parameter redoes
    the task; a checkpoint of the same configuration is resumed."""
    if train_cfg.resume != "auto":
        return
    found = ckpt.load_latest_valid(task_dir, map_location="cpu")
    if found is not None and config_diff(found[1]["config"], config_to_dict(train_cfg)):
        print(f"{task_dir}: checkpoints of another configuration are set aside; training this task anew", file=sys.stderr)
        train_cfg.resume = "never"


def _record_hash(cfg: CILConfig, train_cfg: TrainConfig) -> str:
    """What a task record is valid for: the training-relevant Trainer config (which holds the
    task's identity), decoding, the memory settings and whether valid was scored."""
    full = config_dict(cfg)
    return sha256_json({"train": training_relevant(config_to_dict(train_cfg)), "decode": full["decode"],
                        "memory": full["memory"], "eval_valid": cfg.eval_valid})


def _load_result(path: Path, run_hash: str) -> dict[str, Any] | None:
    """The task record at ``path`` if it was written for ``run_hash``; else None (the task is run)."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return stored if stored.get("config_hash") == run_hash else None


def _final_weights(task_dir: Path) -> dict[str, torch.Tensor]:
    """Model state of a finished task's last valid checkpoint (where the next task starts)."""
    found = ckpt.load_latest_valid(task_dir, map_location="cpu")
    if found is None:
        raise CheckpointError(task_dir, "finished task has no loadable checkpoint")
    return found[1]["model"]
