"""The Trainer: one training loop for every model in the toolkit.

A model plugs in through the :class:`TrainTask` protocol. The Trainer owns the optimizers
(one AdamW by default, or the task's own list, see :mod:`speechunits.train.optim`), LR
schedules, gradient accumulation and clipping, mixed precision, DDP, device placement of the
task's state, logging and checkpoint/resume. Resume continues the *same* run: with fp32 on CPU
the resumed run's final weights are bitwise equal to an uninterrupted run's.

One optimizer step of a task with several optimizers runs them in the declared order. Each
one zeroes its gradients, runs forward and backward of ``training_step(..., optimizer=name)``
over the step's micro-batches (fetched once, so every optimizer sees the same data), clips
its own parameters and steps itself and its scheduler. A task without ``optimizers()`` is the
one-element case of the same code, and its logs and checkpoints keep their format-1 keys.

A non-finite loss raises :class:`FloatingPointError` (``nonfinite=raise``, the default). With
``nonfinite=skip`` it, or a non-finite gradient norm, makes that optimizer skip its update for
the step instead (see :meth:`Trainer._optimizer_step` and :mod:`speechunits.train.nonfinite`).

SIGTERM or SIGUSR1 during ``fit`` (Slurm's warning before a kill) ends the run at the next
step boundary: the ranks agree, checkpoint and leave with ``SystemExit(128 + signum)``; the
checkpoint is an ordinary resume point (see :mod:`speechunits.train.stop_signals`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.killpoints import kill_point
from speechunits.provenance import write_provenance
from speechunits.train import checkpoint as ckpt
from speechunits.train.config import TrainConfig, config_diff, config_to_dict, config_to_yaml, training_relevant
from speechunits.train.distributed import DistInfo, all_gather_object, all_reduce_sum, barrier
from speechunits.train.logger import METRICS_NAME, TENSORBOARD_DIR, MetricsLogger
from speechunits.train.nonfinite import NONFINITE_NAME, SkipTracker
from speechunits.train.optim import OptimizerSpec, default_optimizer, param_groups, trained_modules
from speechunits.train.placement import place_task
from speechunits.train.rng import capture_rng_state, restore_rng_state, seed_everything
from speechunits.train.stop_signals import StopSignals, signal_name
from speechunits.train.wrap import wrap_model

__all__ = ["Trainer", "TrainTask", "move_to", "param_groups"]

CONFIG_NAME = "config.yaml"
WALL_CLOCK_METRICS = frozenset({"items_per_s"})
"""Logged metrics that measure the machine, not the run: left out of checkpoints, so two runs of
one config write the same checkpoint bytes (and a resumed run the uninterrupted run's)."""


@runtime_checkable
class TrainTask(Protocol):
    """What a model provides to the Trainer.

    - ``model``: the trainable module. During :meth:`Trainer.fit` the Trainer replaces it by
      its DDP / compiled wrapper (so forward passes in ``training_step`` sync gradients); use
      :func:`speechunits.train.wrap.unwrap_model` to reach submodules. It is restored after.
    - ``training_step(batch, step)``: forward + loss on one micro-batch (already moved to the
      device); ``step`` is the 0-based index of the optimizer update in progress. Returns the
      loss tensor and a dict of float metrics.
    - ``batches(epoch)``: the micro-batches of one epoch for this rank. Must be deterministic
      given ``(epoch, rank)`` (seed your own generator from the epoch; never draw the order
      from the global RNG) so a resumed run can skip the batches already consumed. If it
      accepts a ``start`` keyword, the Trainer passes the number of batches to skip instead
      of skipping them itself.
    - ``state_dict()`` / ``load_state_dict(state)``: extra task state (EMA teacher, running
      statistics); tensors and plain Python values only.

    Optional: ``on_step_end(step)`` after each optimizer update, once every declared
    optimizer has stepped (same ``step`` index as the training_step calls of that update),
    ``validate(step) -> dict`` (called on every rank under ``torch.no_grad()`` with the
    trained modules in eval mode; rank 0's dict is logged), ``num_items(batch) -> int`` for
    the throughput figure (default: size of the first tensor's first dimension), and
    ``media(step) -> {"audio": {name: (wave, sample_rate)}, "images": {name: HxWx3 uint8}}``,
    called on rank 0 only, right after ``validate`` and in the same eval/no-grad state, whose
    audio clips and pictures go to TensorBoard (a vocoder's samples and mel plots).

    Optional, ``batch_ids(batch) -> list[str]``: the utterance ids of a micro-batch (as
    ``batches`` yielded it), so an update skipped under ``nonfinite=skip`` names the data that
    caused it in ``nonfinite.jsonl`` (gathered from every rank; ``[]`` without the hook).

    Optional, several optimizers: ``optimizers(config) -> list[OptimizerSpec]`` in step order.
    Then ``training_step(batch, step, optimizer=name)`` is called once per optimizer and
    micro-batch and returns the loss that optimizer minimises. The modules a spec names
    (task attributes, e.g. a GAN's ``disc``) are moved, wrapped (DDP, compile) for the run and
    checkpointed like ``model`` (reach the plain module with ``unwrap_model`` during ``fit``).

    Optional, device placement: ``to(device)``. The Trainer calls it (or, by default,
    :func:`speechunits.train.placement.place_task_state`, which moves every module, tensor and
    ``to``-able attribute such as an EMA teacher) before training and after loading a
    checkpoint, so no task moves its own state inside ``training_step``.
    """

    model: nn.Module

    def training_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]: ...

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in dicts, lists, tuples, named tuples, dataclasses) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to(getattr(batch, f.name), device)
                                              for f in dataclasses.fields(batch) if f.init})
    return batch


def _first_dim(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for v in batch:
            n = _first_dim(v)
            if n:
                return n
    return 0


class _BatchCursor:
    """Micro-batches across epochs with the position (epoch, batches consumed) tracked."""

    def __init__(self, task: TrainTask, epoch: int, position: int) -> None:
        self.task = task
        self.epoch = epoch
        self.position = position
        self._it = self._open(epoch, position)

    def _open(self, epoch: int, skip: int) -> Iterator[Any]:
        fn = self.task.batches
        if skip and "start" in inspect.signature(fn).parameters:
            return iter(fn(epoch, start=skip))  # type: ignore[call-arg]
        it = iter(fn(epoch))
        if skip:
            consumed = sum(1 for _ in itertools.islice(it, skip))
            if consumed < skip:
                raise CheckpointError(
                    None,
                    f"cannot restore the data position: epoch {epoch} has {consumed} batches but the checkpoint "
                    f"had consumed {skip}; the data changed since the checkpoint",
                )
        return it

    def take(self, count: int) -> list[tuple[Any, str]]:
        """The next ``count`` micro-batches, each with its data position for error messages."""
        return [(self.next(), f"epoch {self.epoch}, batch {self.position}") for _ in range(count)]

    def next(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch += 1
            self.position = 0
            self._it = self._open(self.epoch, 0)
            try:
                batch = next(self._it)
            except StopIteration:
                raise ConfigError(None, f"task.batches({self.epoch}) yielded no batches") from None
        self.position += 1
        return batch


@dataclass
class _OptimizerStepResult:
    """What one optimizer's share of a training step reports to the log."""

    loss: Tensor  # mean over the micro-batches (float64, on the device: read only when logged)
    metrics: dict[str, float]
    lr: float
    grad_norm: Tensor  # before clipping


def load_schedule_position(scheduler: Any, saved: dict[str, Any]) -> None:
    """Resume a LambdaLR at the saved step under *this* run's schedule.

    ``LambdaLR.load_state_dict`` also restores the saved schedule's parameters (the attributes of
    its :class:`~speechunits.train.schedule.LRFactor`). Where the config changed them (e.g.
    ``max_steps`` raised with ``resume_force=true`` to train longer), the saved ones would keep
    the old decay, often at lr 0 from the resumed step on. The position comes from the
    checkpoint, the shape from the config, and the learning rate is set for the resumed step.
    """
    fresh = [dict(getattr(f, "__dict__", {})) for f in scheduler.lr_lambdas]
    scheduler.load_state_dict(saved)
    for factor, params in zip(scheduler.lr_lambdas, fresh):
        if params:
            factor.__dict__.update(params)
    step = scheduler.last_epoch
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


class Trainer:
    """Train ``task`` under ``config``, writing checkpoints and logs to ``out_dir``.

    ``optimizers`` are the task's :class:`OptimizerSpec` s in step order (one AdamW from the
    config when the task declares none) and ``modules`` its trained modules by attribute name,
    unwrapped; ``model``, ``optimizer`` and ``scheduler`` are the primary ones.
    """

    def __init__(self, task: TrainTask, config: TrainConfig, out_dir: str | Path | None = None, dist: DistInfo | None = None) -> None:
        self.task = task
        self.config = config
        self.out_dir = Path(out_dir if out_dir is not None else config.out_dir)
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.use_bf16 = self._resolve_precision()
        place_task(task, self.device)  # first: optimizers are built over parameters on the device
        self._declares_optimizers = callable(getattr(task, "optimizers", None))
        if self._declares_optimizers:
            self.optimizers: list[OptimizerSpec] = list(task.optimizers(config))  # type: ignore[attr-defined]
        else:
            self.optimizers = [default_optimizer(config, task.model)]
        self.modules = trained_modules(task, self.optimizers)
        for module in self.modules.values():  # in case the task's own to() left one out
            module.to(self.device)
        self.step = 0
        self.start_step = 0  # where fit() began (after a resume)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.resumed_from: Path | None = None
        self.last_metrics: dict[str, float] = {}
        self._skips = SkipTracker(self.out_dir, config.nonfinite_patience, write=self.dist.is_main)

    @property
    def skipped_steps(self) -> int:
        """Optimizer updates skipped for a non-finite loss or gradient (one per optimizer and step)."""
        return self._skips.skipped_steps

    @property
    def model(self) -> nn.Module:
        """``task.model``, unwrapped."""
        return self.modules["model"]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The first declared optimizer (the only one of a task that declares none)."""
        return self.optimizers[0].optimizer

    @property
    def scheduler(self) -> Any:
        """The first declared optimizer's scheduler."""
        return self.optimizers[0].scheduler

    # ----------------------------------------------------------------- setup helpers
    def _resolve_precision(self) -> bool:
        p = self.config.precision
        if p == "bf16" and self.device.type != "cuda":
            raise ConfigError(None, "precision=bf16 needs a CUDA device; use precision=auto or fp32 on CPU")
        return p == "bf16" or (p == "auto" and self.device.type == "cuda")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _find_resume(self) -> tuple[Path, dict[str, Any]] | None:
        r = self.config.resume
        if r == "never":
            return None
        if r == "auto":
            return ckpt.load_latest_valid(self.out_dir, map_location="cpu")
        target = Path(r)
        if target.is_dir():
            found = ckpt.load_latest_valid(target, map_location="cpu")
            if found is None:
                raise CheckpointError(target, "resume: no checkpoint in this directory")
            return found
        return target, ckpt.load_checkpoint(target, map_location="cpu")

    def _check_compatible(self, path: Path, state: dict[str, Any]) -> None:
        if self.config.resume_force:
            return
        diff = config_diff(state["config"], config_to_dict(self.config))
        if int(state["world_size"]) != self.dist.world_size:
            diff.append(f"world_size: {state['world_size']} -> {self.dist.world_size}")
        if diff:
            raise CheckpointError(
                path,
                "config differs from the checkpoint's in training-relevant keys: "
                + "; ".join(diff)
                + " (resume_force=true resumes anyway, resume=never starts over)",
            )

    def _load_state(self, path: Path, state: dict[str, Any]) -> dict[str, Any] | None:
        """Load everything but the RNG; returns this rank's RNG state to restore later."""
        self._check_compatible(path, state)
        modules, optimizers = ckpt.unpack_trained_state(state)
        found, expected = [o.name for o in optimizers], [s.name for s in self.optimizers]
        if found != expected:
            raise CheckpointError(path, f"checkpoint holds optimizers {found}, the task declares {expected} (in step order)")
        if set(modules) != set(self.modules):
            raise CheckpointError(path, f"checkpoint holds trained modules {sorted(modules)}, the task trains {sorted(self.modules)}")
        try:
            for name, module in self.modules.items():
                module.load_state_dict(modules[name])
            for spec, saved in zip(self.optimizers, optimizers):
                spec.optimizer.load_state_dict(saved.optimizer)
                if (spec.scheduler is None) != (saved.scheduler is None):
                    raise ValueError(f"optimizer {spec.name!r}: scheduler {'absent' if saved.scheduler is None else 'present'} "
                                     f"in the checkpoint, {'absent' if spec.scheduler is None else 'present'} in the task")
                if spec.scheduler is not None:
                    load_schedule_position(spec.scheduler, saved.scheduler)
            if hasattr(self.task, "load_state_dict") and state.get("task") is not None:
                self.task.load_state_dict(state["task"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(path, f"checkpoint does not fit this model/task: {err}") from err
        place_task(self.task, self.device)  # load_state_dict may have brought CPU tensors back
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._skips.load_state_dict(state)
        self.last_metrics = dict(state.get("metrics") or {})  # the next checkpoint's, until this run logs
        self.resumed_from = path
        rngs = state["rng"]
        return rngs[self.dist.rank] if self.dist.rank < len(rngs) else None

    def _state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        task_state = self.task.state_dict() if hasattr(self.task, "state_dict") else None
        return {
            "format": ckpt.FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size,
            **self._skips.state_dict(),
            **ckpt.pack_trained_state(
                {name: module.state_dict() for name, module in self.modules.items()},
                [
                    ckpt.OptimizerState(s.name, s.optimizer.state_dict(), None if s.scheduler is None else s.scheduler.state_dict())
                    for s in self.optimizers
                ],
            ),
            "task": task_state,
            "rng": rng_states,
            "config": config_to_dict(self.config),
            "metrics": {k: v for k, v in self.last_metrics.items() if k not in WALL_CLOCK_METRICS},
        }

    def save(self) -> Path | None:
        """Checkpoint now (collective: every rank must call it; rank 0 writes)."""
        rng_states = all_gather_object(capture_rng_state())
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.out_dir, self.step), self._state(rng_states))
            ckpt.prune_checkpoints(self.out_dir, self.config.keep_last)
        barrier()
        return path

    def _set_aside_previous_run(self) -> None:
        """A run that does not continue this directory's checkpoints must not mix with them:
        move earlier checkpoints and logs into ``replaced-<UTC time>/``."""
        leftovers = [self.out_dir / n for n in (ckpt.CHECKPOINT_DIR, METRICS_NAME, TENSORBOARD_DIR, NONFINITE_NAME)]
        leftovers = [p for p in leftovers if p.exists()]
        if not ckpt.list_checkpoints(self.out_dir) or not leftovers:
            return
        aside = self.out_dir / time.strftime("replaced-%Y%m%dT%H%M%S", time.gmtime())
        aside.mkdir(exist_ok=True)
        for p in leftovers:
            p.rename(aside / p.name)
        print(f"not resuming (resume={self.config.resume}): moved the previous run's checkpoints and logs to {aside}", file=sys.stderr)

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        """Train until ``max_steps`` (or ``stop_after``); returns the last logged metrics.

        SIGTERM or SIGUSR1 (handled while ``fit`` runs in the main thread) stops the run at the
        end of the step in progress, on every rank: it checkpoints that step and raises
        ``SystemExit(128 + signum)``. A signal during the last step lets the run finish."""
        cfg, main = self.config, self.dist.is_main
        found = self._find_resume()
        rng_to_restore = self._load_state(*found) if found else None
        self.start_step = self.step
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.out_dir)
            if found is None or found[0].resolve().parent != ckpt.checkpoint_dir(self.out_dir).resolve():
                self._set_aside_previous_run()
            self._skips.start(self.step)
            atomic_write_text(self.out_dir / CONFIG_NAME, config_to_yaml(cfg))
        if found is None:
            seed_everything(cfg.seed + self.dist.rank)
        logger = MetricsLogger(self.out_dir, enabled=main, tensorboard=cfg.tensorboard, start_step=self.step)
        if main and found:
            print(f"resuming from {found[0]} (step {self.step})", file=sys.stderr)

        cursor = _BatchCursor(self.task, self.epoch, self.batch_in_epoch)
        if rng_to_restore is not None:  # after the data fast-forward, which may touch RNGs
            restore_rng_state(rng_to_restore)

        wrapped = {
            name: wrap_model(module, self.dist, compile=cfg.compile, find_unused_parameters=cfg.ddp_find_unused)
            for name, module in self.modules.items()
        }
        originals = {name: getattr(self.task, name) for name in wrapped}
        for name, module in wrapped.items():
            setattr(self.task, name, module)
        self._set_training(True)
        end_step = cfg.max_steps if cfg.stop_after is None else min(cfg.max_steps, cfg.stop_after)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (main and cfg.progress), file=sys.stderr, dynamic_ncols=True, desc="train")
        window_items, window_t0 = 0, time.perf_counter()
        saved_at = self.step if found else -1
        stops = StopSignals(self.dist.distributed).install()  # restored in the finally below
        stopped_by = 0
        try:
            while self.step < end_step:
                micro_batches = cursor.take(cfg.accum_steps)
                window_items += sum(self._num_items(batch) for batch, _ in micro_batches)
                results = [self._optimizer_step(spec, micro_batches, list(wrapped.values())) for spec in self.optimizers]
                if hasattr(self.task, "on_step_end"):
                    self.task.on_step_end(self.step)
                self.step += 1
                kill_point("train-step")
                self.epoch, self.batch_in_epoch = cursor.epoch, cursor.position
                bar.update(1)

                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self.last_metrics = self._reduce(results, window_items, window_t0)
                    logger.log(self.step, self.last_metrics)
                    losses = {k: f"{v:.4g}" for k, v in self.last_metrics.items() if k.split("/")[0] == "loss"}
                    bar.set_postfix(**losses, items_s=f"{self.last_metrics['items_per_s']:.1f}")
                    window_items, window_t0 = 0, time.perf_counter()
                if self.step == cfg.max_steps or (cfg.validate_every and self.step % cfg.validate_every == 0):
                    # before the checkpoint of this step, the last one too: a run resumed from it
                    # (killed before it finished) does not validate and log that step twice
                    self._validate(logger)
                if self.step % cfg.save_every == 0 or self.step == end_step:
                    self.save()
                    saved_at = self.step
                if self.step < end_step:  # the last step finishes the run anyway
                    stopped_by = stops.agreed()  # collective when distributed: one all-reduce
                    if stopped_by:
                        if saved_at != self.step:
                            self.save()
                            saved_at = self.step
                        break
            if not stopped_by and self.step >= cfg.max_steps:
                if saved_at != self.step:
                    self.save()
                elif main:  # killed between the last checkpoint's rename and the pruning after it
                    ckpt.prune_checkpoints(self.out_dir, cfg.keep_last)
                if main:
                    write_provenance(self.out_dir, training_relevant(config_to_dict(cfg)))
        finally:
            stops.restore()
            bar.close()
            logger.close()
            for name, module in originals.items():
                setattr(self.task, name, module)
        if stopped_by:
            if main:
                path = ckpt.checkpoint_path(self.out_dir, self.step)
                print(
                    f"received {signal_name(stopped_by)} at step {self.step}: checkpoint {path}; "
                    "rerun with resume=auto (or a requeued job) continues from it",
                    file=sys.stderr,
                    flush=True,
                )
            raise SystemExit(128 + stopped_by)
        if stops.received and main:
            print(f"received {signal_name(stops.received)} during the last step of this run: finished at step {self.step}", file=sys.stderr)
        return dict(self.last_metrics)

    def _num_items(self, batch: Any) -> int:
        return self.task.num_items(batch) if hasattr(self.task, "num_items") else _first_dim(batch)

    def _training_step(self, batch: Any, spec: OptimizerSpec) -> tuple[Tensor, dict[str, float]]:
        if self._declares_optimizers:
            return self.task.training_step(batch, self.step, optimizer=spec.name)  # type: ignore[call-arg]
        return self.task.training_step(batch, self.step)

    def _no_sync(self, wrapped: list[nn.Module], sync: bool) -> contextlib.ExitStack:
        """DDP ``no_sync`` on every wrapped module for a micro-batch that does not sync: a
        module that another optimizer steps still gets gradients through this backward."""
        stack = contextlib.ExitStack()
        if self.dist.distributed and not sync:
            for module in wrapped:
                if hasattr(module, "no_sync"):
                    stack.enter_context(module.no_sync())
        return stack

    def _optimizer_step(self, spec: OptimizerSpec, micro_batches: list[tuple[Any, str]], wrapped: list[nn.Module]) -> _OptimizerStepResult:
        """One optimizer's share of a step: accumulate its loss's gradients over the
        micro-batches, clip its parameters, step it and its scheduler.

        Its gradients are zeroed first, so gradients another optimizer's loss left on its
        parameters (a discriminator's, from the generator's loss) do not count. Micro-batches
        are moved to the device one at a time, so device memory holds one, as before.

        Under ``nonfinite=skip`` a non-finite loss on any rank, or a non-finite gradient norm,
        skips this optimizer's update (:meth:`_skip`). The ranks agree on the loss before
        backward, so all of them leave out the backward (and DDP's gradient reduction) together
        and none waits for the others. The default ``raise`` adds no collective."""
        spec.optimizer.zero_grad(set_to_none=True)
        skip_mode = self.config.nonfinite == "skip"
        count = len(micro_batches)
        lr = spec.lr
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        metric_sums: dict[str, float] = {}
        for index, (host_batch, position) in enumerate(micro_batches):
            batch = move_to(host_batch, self.device)
            with self._no_sync(wrapped, sync=index == count - 1):
                with self._autocast():
                    loss, metrics = self._training_step(batch, spec)
                finite = bool(torch.isfinite(loss.detach()).all())
                if not finite and not skip_mode:
                    which = f", optimizer {spec.name!r}" if len(self.optimizers) > 1 else ""
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}{which} ({position})")
                if skip_mode and not self._on_every_rank(finite):
                    self._skip(spec, "loss", position, [] if finite else [host_batch])
                    nan = torch.full((), float("nan"), dtype=torch.float64, device=self.device)
                    return _OptimizerStepResult(nan, {}, lr, nan)  # the step's loss and metrics are incomplete
                (loss / count).backward()
            loss_sum += loss.detach().double() / count
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + float(v) / count
        grad_norm = torch.nn.utils.clip_grad_norm_(spec.params, spec.max_norm)
        if skip_mode and not self._on_every_rank(bool(torch.isfinite(grad_norm))):
            span = micro_batches[0][1] if count == 1 else f"{micro_batches[0][1]} to {micro_batches[-1][1]}"
            self._skip(spec, "grad", span, [b for b, _ in micro_batches])
        else:
            spec.optimizer.step()
            self._skips.stepped(spec.name)
            if spec.scheduler is not None:
                spec.scheduler.step()
        return _OptimizerStepResult(loss_sum, metric_sums, lr, grad_norm)

    def _on_every_rank(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank: one all-reduce when distributed, so all agree."""
        if not self.dist.distributed:
            return ok
        return all_reduce_sum(0.0 if ok else 1.0) == 0.0

    def _skip(self, spec: OptimizerSpec, reason: str, position: str, bad_batches: list[Any]) -> None:
        """Drop ``spec``'s update of this step (collective: every rank calls it): zero its
        gradients, record the skip with the ids of this rank's ``bad_batches`` gathered from all
        ranks, and step its scheduler anyway, so the LR stays tied to the step index."""
        spec.optimizer.zero_grad(set_to_none=True)
        batch_ids = getattr(self.task, "batch_ids", None)
        local = [str(i) for b in bad_batches for i in batch_ids(b)] if batch_ids is not None else []
        ids = [i for rank_ids in all_gather_object(local) for i in rank_ids]
        self._skips.skipped(self.step, spec.name, reason, position, ids)
        if spec.scheduler is not None:
            with warnings.catch_warnings():  # torch warns when the first scheduler step precedes every optimizer step
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                spec.scheduler.step()

    def _key(self, key: str, spec: OptimizerSpec) -> str:
        """Log key of a per-optimizer number: as it is with one optimizer, ``<key>/<name>`` with several."""
        return key if len(self.optimizers) == 1 else f"{key}/{spec.name}"

    def _reduce(self, results: list[_OptimizerStepResult], items: int, t0: float) -> dict[str, float]:
        """This step's losses and metrics (mean over micro-batches and ranks) and the throughput
        since the previous log line (collective). Per-step values, not window means, so a
        resumed run logs exactly what the uninterrupted run logs."""
        local: dict[str, float] = {}
        for spec, result in zip(self.optimizers, results):
            local[self._key("loss", spec)] = float(result.loss.item())
            local.update({self._key(k, spec): v for k, v in result.metrics.items()})
        gathered = all_gather_object(local)
        keys = sorted(set().union(*gathered))
        out = {k: sum(g[k] for g in gathered if k in g) / sum(1 for g in gathered if k in g) for k in keys}
        elapsed = max(time.perf_counter() - t0, 1e-9)
        out["items_per_s"] = all_reduce_sum(items) / elapsed
        for spec, result in zip(self.optimizers, results):
            out[self._key("lr", spec)] = result.lr
            out[self._key("grad_norm", spec)] = float(result.grad_norm)
        out["epoch"] = float(self.epoch)
        if self.config.nonfinite == "skip":
            out["skipped_steps"] = float(self.skipped_steps)
        return out

    def _set_training(self, training: bool) -> None:
        for module in self.modules.values():
            module.train(training)

    def _validate(self, logger: MetricsLogger) -> None:
        if not hasattr(self.task, "validate"):
            return
        self._set_training(False)
        media = None
        try:
            with torch.no_grad(), self._autocast():
                result = self.task.validate(self.step)
                if self.dist.is_main and logger.enabled and hasattr(self.task, "media"):
                    media = self.task.media(self.step)
        finally:
            self._set_training(True)
        if result:
            logger.log(self.step, {k: float(v) for k, v in result.items()}, prefix="valid/")
        if media:
            logger.log_media(self.step, audio=media.get("audio", {}), images=media.get("images", {}))
