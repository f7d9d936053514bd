"""The class-incremental SLU task loop: train a method through a sequence of tasks and score it.

For each task ``t`` of the benchmark (``fsc-6``, ``slurp-3``, ... or the training classes by
frequency cut into ``num_tasks``):

1. data = training examples of task ``t``'s classes + the rehearsal memory (methods with one);
2. the model continues from task ``t-1``'s final weights (nothing is re-initialised); for
   methods with NSPT or seq-KD the previous-task model is frozen as teacher, and for seq-KD
   its hypotheses on the memory utterances are decoded once, as extra targets;
3. training with the shared :class:`~speechunits.train.Trainer` into
   ``<out>/<run>/seed<k>/task<t>/`` (checkpoints, logs; resumable: ``resume=auto``; checkpoints
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

With ``first_task.shared`` task 0 is not trained per method: every non-joint run of a seed
starts from the shared task-0 model (:mod:`speechunits.slu.first_task`) and takes its scores.

A run is one method with its settings, named by ``--name`` (default: the method), at one
seed. At the end ``<out>/<run>/seed<k>/results.json`` holds the matrix, AIA, last accuracy, BWT,
forgetting and WER, with ``RESULTS.md`` and ``accuracy.png`` (:mod:`speechunits.slu.results`).
The tokenizer and the class split are shared by all methods of an experiment:
``<out>/tokenizer/bpe.model`` and ``<out>/split.json`` (built once, from the training split of
all classes, by :func:`~speechunits.slu.experiment.prepare_experiment`). The configuration
schema is :mod:`speechunits.slu.config`.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from speechunits.io_utils import atomic_write_json, sha256_json
from speechunits.slu.config import CILConfig
from speechunits.slu.evaluate import decode_examples, evaluate, pooled_features
from speechunits.slu.experiment import CILData, prepare_experiment
from speechunits.slu.first_task import FirstTask, ensure_first_task
from speechunits.slu.inputs import InputSource, make_input_source
from speechunits.slu.memory import RehearsalMemory
from speechunits.slu.objective import CoconutWeights
from speechunits.slu.results import float_or_nan, json_safe, summarize_method, write_method_results
from speechunits.slu.task_setup import (RESULT_NAME, build_objective, final_weights, load_result, protocol_sha,
                                        record_hash, restart_if_changed, train_config)
from speechunits.slu.tasks import ClassIncrementalSplit
from speechunits.slu.train_task import MethodSpec, SLUTrainTask, method_spec
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import (DistInfo, assert_same_on_ranks, barrier, broadcast_object, init_distributed,
                                            shutdown_distributed)
from speechunits.train.loop import Trainer

PathLike = str | os.PathLike[str]


def coconut_weights(cfg: CILConfig, method: MethodSpec) -> CoconutWeights:
    """The configured loss weights, with the losses ``method`` does not use set to 0."""
    return method.weights(CoconutWeights(**dict(cfg.losses)))


def run_dir(out: Path, name: str, seed: int) -> Path:
    """Where one run (method + settings, named ``name``) at one seed writes."""
    return out / name / f"seed{seed}"


def memory_budget(cfg: CILConfig, method: MethodSpec, num_train: int) -> int:
    """The rehearsal budget: ``memory.budget``, else ``memory.fraction`` of the whole training set; 0 without memory."""
    if not method.memory:
        return 0
    return cfg.memory.budget if cfg.memory.budget is not None else int(round(cfg.memory.fraction * num_train))


def task_train_config(cfg: CILConfig, method: MethodSpec, t: int, classes: Sequence[str], num_examples: int,
                      memory_ids: Sequence[str], task_dir: Path) -> TrainConfig:
    """The Trainer config of task ``t``: ``cfg.train`` + run dir, step count and identity."""
    if method.joint:
        epochs = cfg.joint_epochs or cfg.epochs_per_task
    else:
        epochs = (cfg.first_task.epochs or cfg.epochs_per_task) if t == 0 else cfg.epochs_per_task
    steps = epochs * -(-num_examples // cfg.batch_size)
    identity = {"method": method.name, "task": t, "classes": list(classes), "num_examples": num_examples,
                "memory_sha": sha256_json(sorted(memory_ids)), "losses": asdict(coconut_weights(cfg, method)),
                "protocol_sha": protocol_sha(cfg, drop=("losses",))}  # the losses this method uses, not all configured
    return train_config(cfg, identity, steps, task_dir)


def run_settings(cfg: CILConfig, method: MethodSpec, budget: int) -> dict[str, Any]:
    """The settings a results.json records for its run (what the comparison table shows)."""
    memory = None
    if method.memory:
        memory = {"budget": budget, "fraction": None if cfg.memory.budget is not None else cfg.memory.fraction,
                  "selection": cfg.memory.selection}
    return {"losses": asdict(coconut_weights(cfg, method)), "memory": memory, "epochs_per_task": cfg.epochs_per_task,
            "joint_epochs": cfg.joint_epochs, "first_task": asdict(cfg.first_task), "batch_size": cfg.batch_size,
            "lr": cfg.train.get("lr")}


# --------------------------------------------------------------------------- the task loop
def run_protocol(
    cfg: CILConfig,
    method_name: str,
    data_dir: PathLike,
    out_dir: PathLike,
    device: str | None = None,
    data: CILData | None = None,
    audio: InputSource | None = None,
    name: str | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[int, dict[str, Any]]:
    """Run (or resume) one method through every task, once per seed (default: ``cfg.seed``),
    into ``<out>/<name>/seed<k>/``; returns ``{seed: results.json contents}`` (``{}`` for a
    seed whose training stopped early through ``train.stop_after``: rerun to resume)."""
    method = method_spec(method_name)
    out = Path(out_dir)
    with _experiment(cfg, data_dir, out, device, data, audio) as (dist, cil_data, inputs):
        results: dict[int, dict[str, Any]] = {}
        for seed in (seeds if seeds is not None else [cfg.seed]):
            results[int(seed)] = _run(replace(cfg, seed=int(seed)), method, name or method.name, out, dist, cil_data, inputs)
            if not results[int(seed)]:
                break
        return results


def run_first_task(cfg: CILConfig, data_dir: PathLike, out_dir: PathLike, seeds: Sequence[int] | None = None,
                   device: str | None = None) -> bool:
    """Train (or find) the shared first task of each seed; False when stopped early by ``stop_after``."""
    out = Path(out_dir)
    with _experiment(cfg, data_dir, out, device) as (dist, cil_data, inputs):
        return all(ensure_first_task(replace(cfg, seed=int(s)), cil_data, inputs, out, dist) is not None
                   for s in (seeds if seeds is not None else [cfg.seed]))


@contextlib.contextmanager
def _experiment(cfg: CILConfig, data_dir: PathLike, out: Path, device: str | None, data: CILData | None = None,
                audio: InputSource | None = None) -> Iterator[tuple[DistInfo, CILData, InputSource]]:
    """The process group, the experiment's examples/split/tokenizer and its input source with
    every example read (both unless given), for the block; the process group ends with it."""
    dist = init_distributed(device)
    try:
        data = data or _prepare_rank0_first(cfg, data_dir, out, dist)
        audio = audio or make_input_source(cfg.model.encoder, cfg.splits)  # waveforms or unit sets
        audio.preload(data.train + data.test + data.valid)
        yield dist, data, audio
    finally:
        shutdown_distributed()


def _run(cfg: CILConfig, method: MethodSpec, name: str, out: Path, dist: DistInfo, data: CILData,
         audio: InputSource) -> dict[str, Any]:
    split = data.split
    run_split = ClassIncrementalSplit(f"{split.name}-joint", (tuple(split.classes),)) if method.joint else split
    tasks = run_split.tasks
    class_index = data.class_index
    weights = coconut_weights(cfg, method)
    method_dir = run_dir(out, name, cfg.seed)
    budget = memory_budget(cfg, method, len(data.train))
    memory = RehearsalMemory(budget, selection=cfg.memory.selection, seed=cfg.seed)
    by_id = {ex.id: ex for ex in data.train}
    device = dist.device
    shared: FirstTask | None = None
    entities = cfg.targets == "entities"
    if cfg.first_task.shared and not method.joint:
        shared = ensure_first_task(cfg, data, audio, out, dist)
        if shared is None:
            return {}

    rows: list[list[float]] = []
    valid_rows: list[list[float]] = []
    last_eval: dict[str, Any] = {}
    last_valid: dict[str, Any] = {}
    prev_weights: dict[str, torch.Tensor] | None = None
    for t, classes in enumerate(tasks):
        task_dir = method_dir / f"task{t}"
        new = [ex for ex in data.train if ex.label in set(classes)]
        mem_ids = [str(k) for k in memory.keys()]
        examples = new + [by_id[k] for k in mem_ids]
        train_cfg = task_train_config(cfg, method, t, classes, len(examples), mem_ids, task_dir)
        from_shared = shared is not None and t == 0
        run_hash = record_hash(train_cfg, decode=asdict(cfg.decode), memory=asdict(cfg.memory), eval_valid=cfg.eval_valid,
                               shared=shared.config_hash if from_shared else None)
        result_path = task_dir / RESULT_NAME
        done = load_result(result_path, run_hash)
        if done is not None:
            print(f"[{name}] task {t}: complete, skipped ({result_path})", file=sys.stderr)
            memory.load_state_dict(done["memory"])
            rows.append([float_or_nan(v) for v in done["test"]["row"]])
            if done.get("valid"):
                valid_rows.append([float_or_nan(v) for v in done["valid"]["row"]])
            last_eval, last_valid = done["test"], done.get("valid") or {}
            prev_weights = None
            continue

        torch.manual_seed(cfg.seed)
        objective = build_objective(cfg, data.tokenizer.vocab_size, weights, audio)
        if from_shared:
            assert shared is not None
            print(f"[{name}] task 0: the shared first task ({shared.dir})", file=sys.stderr)
            objective.load_state_dict(shared.weights())
            objective.to(device)
            test_eval, valid_eval = shared.test, shared.valid
        else:
            if t > 0:
                if prev_weights is None:
                    prev_dir = method_dir / f"task{t - 1}"
                    prev_weights = shared.weights() if (shared is not None and t == 1) else final_weights(prev_dir)
                objective.load_state_dict(prev_weights)
            objective.to(device)
            print(f"[{name}] task {t}: {len(classes)} classes, {len(new)} new + {len(mem_ids)} memory examples, "
                  f"{train_cfg.max_steps} steps -> {task_dir}", file=sys.stderr)
            if not _train_task(cfg, method, name, weights, objective, data, audio, examples, memory, by_id, t, train_cfg, task_dir, dist):
                return {}
            seen = set(run_split.seen_classes(t))
            model = objective.model
            test_eval = evaluate(model, [ex for ex in data.test if ex.label in seen], data.tokenizer, run_split, audio, cfg.decode, device, desc=f"test task{t}", entities=entities)
            valid_eval = evaluate(model, [ex for ex in data.valid if ex.label in seen], data.tokenizer, run_split, audio, cfg.decode, device, desc=f"valid task{t}", entities=entities) if data.valid else None
        if method.memory and t + 1 < len(tasks):
            if dist.is_main:  # selected once, on rank 0, and broadcast: herding features may differ in the last bit per rank
                feats = pooled_features(objective.model, new, audio, cfg.decode.batch_size, device) if memory.selection == "herding" else None
                memory.add_task([ex.id for ex in new], [ex.label for ex in new], feats)
            memory.load_state_dict(broadcast_object(memory.state_dict()))
        rows.append(test_eval["row"])
        if valid_eval:
            valid_rows.append(valid_eval["row"])
        last_eval, last_valid = test_eval, valid_eval or {}
        prev_weights = {k: v.detach().cpu().clone() for k, v in objective.state_dict().items()}
        print(f"[{name}] task {t}: test accuracy on seen classes {test_eval['accuracy']:.4f}, WER {test_eval['wer']:.4f}"
              + (f"; valid {valid_eval['accuracy']:.4f}" if valid_eval else ""), file=sys.stderr)
        if dist.is_main:
            atomic_write_json(result_path, json_safe({"config_hash": run_hash, "method": method.name, "task": t,
                                                       "classes": list(classes), "test": test_eval, "valid": valid_eval,
                                                       "memory": memory.state_dict(), "memory_counts": memory.counts(),
                                                       "shared_first_task": str(shared.dir) if from_shared else None}))
    results = summarize_method(method.name, rows, valid_rows, last_eval, split)
    results.update({"run": name, "seed": cfg.seed, "task0_accuracy": rows[0][0] if rows else float("nan"),
                    "valid_task0_accuracy": valid_rows[0][0] if valid_rows else float("nan"),
                    "settings": run_settings(cfg, method, budget),
                    "slu_f1": float_or_nan(last_eval.get("slu_f1")), "valid_slu_f1": float_or_nan(last_valid.get("slu_f1"))})
    if dist.is_main:
        write_method_results(method_dir, results)
    return results


def _train_task(cfg: CILConfig, method: MethodSpec, name: str, weights: CoconutWeights, objective: Any, data: CILData,
                audio: InputSource, examples: list[Any], memory: RehearsalMemory, by_id: dict[str, Any], t: int,
                train_cfg: TrainConfig, task_dir: Path, dist: DistInfo) -> bool:
    """Train task ``t`` (teacher and seq-KD targets first, for methods with them); False when
    training stopped early through ``stop_after`` (checkpointed, resumed by the next run)."""
    mem_ids = [str(k) for k in memory.keys()]
    kd_hyps = None
    if t > 0 and method.needs_teacher:
        objective.start_task()
        if weights.kd > 0 and mem_ids:
            teacher_model = objective.teacher[0]
            mem_examples = [by_id[k] for k in mem_ids]
            hyps = decode_examples(teacher_model, mem_examples, audio, cfg.decode, dist.device, desc="teacher hyps") if dist.is_main else None
            kd_hyps = {ex.id: h for ex, h in zip(mem_examples, broadcast_object(hyps))}  # rank 0's, on every rank
    _check_ranks_agree(dist, name, t, [ex.id for ex in examples], memory, kd_hyps)
    task = SLUTrainTask(objective, examples, set(mem_ids), data.tokenizer, data.class_index, audio, cfg.batch_size,
                        seed=cfg.seed * 1000 + t, kd_hyps=kd_hyps, dist=dist)
    restart_if_changed(train_cfg, task_dir)
    trainer = Trainer(task, train_cfg, dist=dist)
    trainer.fit()
    if trainer.step < train_cfg.max_steps:
        print(f"[{name}] task {t}: stopped at step {trainer.step}/{train_cfg.max_steps}; rerun to resume", file=sys.stderr)
        return False
    return True


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
