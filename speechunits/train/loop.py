"""The Trainer: one training loop for every model in the toolkit.

A model plugs in through the :class:`TrainTask` protocol. The Trainer owns the optimizer
(AdamW), LR schedule, gradient accumulation and clipping, mixed precision, DDP, logging and
checkpoint/resume. Resume continues the *same* run: with fp32 on CPU the resumed run's final
weights are bitwise equal to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.provenance import write_provenance
from speechunits.train import checkpoint as ckpt
from speechunits.train.config import TrainConfig, config_diff, config_to_dict, config_to_yaml, training_relevant
from speechunits.train.distributed import DistInfo, all_gather_object, all_reduce_sum, barrier
from speechunits.train.logger import METRICS_NAME, TENSORBOARD_DIR, MetricsLogger
from speechunits.train.rng import capture_rng_state, restore_rng_state, seed_everything
from speechunits.train.schedule import build_scheduler
from speechunits.train.wrap import unwrap_model, wrap_model

CONFIG_NAME = "config.yaml"


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

    Optional: ``on_step_end(step)`` after each optimizer update (same ``step`` index as the
    training_step calls of that update), ``validate(step) -> dict`` (called on every rank
    under ``torch.no_grad()`` with the model in eval mode; rank 0's dict is logged),
    ``num_items(batch) -> int`` for the throughput figure (default: size of the first
    tensor's first dimension).
    """

    model: nn.Module

    def training_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]: ...

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in dicts, lists, tuples, dataclass-free nests) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on >= 2-d weights only (no decay on biases, norms, scalars)."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


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


class Trainer:
    """Train ``task`` under ``config``, writing checkpoints and logs to ``out_dir``."""

    def __init__(self, task: TrainTask, config: TrainConfig, out_dir: str | Path | None = None, dist: DistInfo | None = None) -> None:
        self.task = task
        self.config = config
        self.out_dir = Path(out_dir if out_dir is not None else config.out_dir)
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.use_bf16 = self._resolve_precision()
        self.model = unwrap_model(task.model).to(self.device)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, config.weight_decay),
            lr=config.lr,
            betas=(float(config.betas[0]), float(config.betas[1])),
            eps=config.eps,
        )
        self.scheduler = build_scheduler(self.optimizer, config.schedule, config.warmup_steps, config.max_steps, config.min_lr_ratio)
        self.step = 0
        self.start_step = 0  # where fit() began (after a resume)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.resumed_from: Path | None = None
        self.last_metrics: dict[str, float] = {}

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
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if hasattr(self.task, "load_state_dict") and state.get("task") is not None:
                self.task.load_state_dict(state["task"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(path, f"checkpoint does not fit this model/task: {err}") from err
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
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
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "task": task_state,
            "rng": rng_states,
            "config": config_to_dict(self.config),
            "metrics": dict(self.last_metrics),
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
        leftovers = [self.out_dir / n for n in (ckpt.CHECKPOINT_DIR, METRICS_NAME, TENSORBOARD_DIR)]
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
        """Train until ``max_steps`` (or ``stop_after``); returns the last logged metrics."""
        cfg, main = self.config, self.dist.is_main
        found = self._find_resume()
        rng_to_restore = self._load_state(*found) if found else None
        self.start_step = self.step
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.out_dir)
            if found is None or found[0].resolve().parent != ckpt.checkpoint_dir(self.out_dir).resolve():
                self._set_aside_previous_run()
            atomic_write_text(self.out_dir / CONFIG_NAME, config_to_yaml(cfg))
        if found is None:
            seed_everything(cfg.seed + self.dist.rank)
        logger = MetricsLogger(self.out_dir, enabled=main, tensorboard=cfg.tensorboard, start_step=self.step)
        if main and found:
            print(f"resuming from {found[0]} (step {self.step})", file=sys.stderr)

        cursor = _BatchCursor(self.task, self.epoch, self.batch_in_epoch)
        if rng_to_restore is not None:  # after the data fast-forward, which may touch RNGs
            restore_rng_state(rng_to_restore)

        wrapped = wrap_model(self.model, self.dist, compile=cfg.compile, find_unused_parameters=cfg.ddp_find_unused)
        original_model = self.task.model
        self.task.model = wrapped
        self.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = cfg.clip_norm if cfg.clip_norm is not None and cfg.clip_norm > 0 else math.inf
        end_step = cfg.max_steps if cfg.stop_after is None else min(cfg.max_steps, cfg.stop_after)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (main and cfg.progress), file=sys.stderr, dynamic_ncols=True, desc="train")
        window_items, window_t0 = 0, time.perf_counter()
        saved_at = self.step if found else -1
        try:
            while self.step < end_step:
                self.optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                metric_sums: dict[str, float] = {}
                for micro in range(cfg.accum_steps):
                    batch = move_to(cursor.next(), self.device)
                    window_items += self.task.num_items(batch) if hasattr(self.task, "num_items") else _first_dim(batch)
                    sync = micro == cfg.accum_steps - 1
                    no_sync = wrapped.no_sync() if (self.dist.distributed and not sync and hasattr(wrapped, "no_sync")) else contextlib.nullcontext()
                    with no_sync:
                        with self._autocast():
                            loss, metrics = self.task.training_step(batch, self.step)
                        if not torch.isfinite(loss.detach()).all():
                            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step} (epoch {cursor.epoch}, batch {cursor.position})")
                        (loss / cfg.accum_steps).backward()
                    loss_sum += loss.detach().double() / cfg.accum_steps
                    for k, v in metrics.items():
                        metric_sums[k] = metric_sums.get(k, 0.0) + float(v) / cfg.accum_steps
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                if hasattr(self.task, "on_step_end"):
                    self.task.on_step_end(self.step)
                self.step += 1
                self.epoch, self.batch_in_epoch = cursor.epoch, cursor.position
                bar.update(1)

                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self.last_metrics = self._reduce(loss_sum, metric_sums, window_items, window_t0, lr, float(grad_norm))
                    logger.log(self.step, self.last_metrics)
                    bar.set_postfix(loss=f"{self.last_metrics['loss']:.4g}", items_s=f"{self.last_metrics['items_per_s']:.1f}")
                    window_items, window_t0 = 0, time.perf_counter()
                if cfg.validate_every and self.step % cfg.validate_every == 0 and self.step != cfg.max_steps:
                    self._validate(logger)
                if self.step % cfg.save_every == 0 or self.step == end_step:
                    self.save()
                    saved_at = self.step
            if self.step >= cfg.max_steps:
                if saved_at != self.step:
                    self.save()
                self._validate(logger)
                if main:
                    write_provenance(self.out_dir, training_relevant(config_to_dict(cfg)))
        finally:
            bar.close()
            logger.close()
            self.task.model = original_model
        return dict(self.last_metrics)

    def _reduce(
        self, loss_sum: Tensor, metric_sums: dict[str, float], items: int, t0: float, lr: float, grad_norm: float
    ) -> dict[str, float]:
        """This step's loss and metrics (mean over micro-batches and ranks) and the throughput
        since the previous log line (collective). Per-step values, not window means, so a
        resumed run logs exactly what the uninterrupted run logs."""
        local = {"loss": float(loss_sum.item()), **metric_sums}
        gathered = all_gather_object(local)
        keys = sorted(set().union(*gathered))
        out = {k: sum(g[k] for g in gathered if k in g) / sum(1 for g in gathered if k in g) for k in keys}
        elapsed = max(time.perf_counter() - t0, 1e-9)
        out["items_per_s"] = all_reduce_sum(items) / elapsed
        out["lr"] = lr
        out["grad_norm"] = grad_norm
        out["epoch"] = float(self.epoch)
        return out

    def _validate(self, logger: MetricsLogger) -> None:
        if not hasattr(self.task, "validate"):
            return
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                result = self.task.validate(self.step)
        finally:
            self.model.train()
        if result:
            logger.log(self.step, {k: float(v) for k, v in result.items()}, prefix="valid/")
