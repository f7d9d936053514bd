"""Smoke test of the training loop on a device: train, stop, resume, compare.

``python -m speechunits.train.smoke --device cuda [--out DIR]`` trains each toy task
(``toy``: regression with an EMA teacher; ``gan``: two optimizers, a discriminator and an EMA
generator) in each setting (``fp32``; ``bf16`` autocast; ``compile``: fp32 under
``torch.compile``) twice: straight through ``--steps`` steps, and stopped after ``--stop``
steps then resumed from the checkpoint by a new task and Trainer. It compares every tensor of
the two final checkpoints (trained modules, optimizer states, EMA and task state, RNG states),
prints one row per case and exits with status 1 when a case fails.

fp32 and compile must match bit for bit, bf16 within ``--bf16-atol``: bf16 autocast keeps fp32
weights, so it is expected to be bitwise too, but the claim made for it is a tolerance. The
runs use deterministic algorithms (``torch.use_deterministic_algorithms``,
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before CUDA starts, cuDNN benchmarking off), without
which cuBLAS may pick different reduction orders from run to run. On the CPU the bf16 cases are
skipped (the Trainer's bf16 is CUDA autocast), so ``--device cpu`` checks fp32 and compile.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint, tensor_leaves
from speechunits.train.config import load_config
from speechunits.train.launch import TaskFactory, run_training
from speechunits.train.toy import ToyRegressionTask
from speechunits.train.toy_gan import ToyGANTask

# Each task draws from the global RNG (dropout, input noise), accumulates and clips, so the
# comparison covers everything a resume has to restore.
TASKS: dict[str, tuple[TaskFactory, list[str]]] = {
    "toy": (ToyRegressionTask, ["lr=0.01", "warmup_steps=3", "accum_steps=2", "clip_norm=1.0", "task.dropout=0.1", "task.noise=0.1"]),
    "gan": (ToyGANTask, ["lr=0.002", "warmup_steps=3", "accum_steps=2", "task.dropout=0.1"]),
}
SETTINGS: dict[str, list[str]] = {
    "fp32": ["precision=fp32"],
    "bf16": ["precision=bf16"],
    "compile": ["precision=fp32", "compile=true"],
}
COMPARED = ("model", "extra_modules", "optimizer", "scheduler", "extra_optimizers", "task", "rng")


@contextlib.contextmanager
def deterministic(device: str) -> Iterator[None]:
    """Deterministic kernels for the duration (restored after, for callers in a test process)."""
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


def compare_states(a: Any, b: Any) -> tuple[bool, float]:
    """(bitwise equal, max abs difference) over the tensors of two nested states; a tensor
    missing on one side, or differing in shape, dtype or any non-float value, is an inf difference."""
    ta, tb = tensor_leaves(a), tensor_leaves(b)
    if ta.keys() != tb.keys():
        return False, math.inf
    bitwise, worst = True, 0.0
    for key, x in ta.items():
        y = tb[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, math.inf
        if torch.equal(x, y):
            continue
        bitwise = False
        if not x.is_floating_point():
            return False, math.inf
        worst = max(worst, float((x.double().cpu() - y.double().cpu()).abs().max()))
    return bitwise, worst


def train(task_factory: TaskFactory, out_dir: Path, device: str, overrides: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """One Trainer run (a fresh task, compile caches reset): the step it started at (after a
    resume) and its newest checkpoint."""
    torch._dynamo.reset()  # a compiled run starts from nothing, as a new process would
    base = [f"out_dir={out_dir}", "progress=false", "tensorboard=false", "log_every=5", "save_every=1000"]
    result = run_training(task_factory, load_config(None, [*base, *overrides]), device=device)
    return result.start_step, load_checkpoint(latest_checkpoint(out_dir))


def run_case(task: str, setting: str, device: str, out: Path, steps: int, stop: int) -> tuple[bool, float]:
    """Uninterrupted vs stopped-and-resumed: (bitwise equal, max abs difference)."""
    factory, task_overrides = TASKS[task]
    overrides = [f"max_steps={steps}", *task_overrides, *SETTINGS[setting]]
    _, straight = train(factory, out / f"{task}-{setting}" / "straight", device, overrides)
    resumed_dir = out / f"{task}-{setting}" / "resumed"
    train(factory, resumed_dir, device, [*overrides, f"stop_after={stop}"])
    started_at, resumed = train(factory, resumed_dir, device, overrides)
    if started_at != stop:
        raise RuntimeError(f"{resumed_dir}: the second part started at step {started_at}, expected a resume at {stop}")
    return compare_states({k: straight[k] for k in COMPARED if k in straight}, {k: resumed[k] for k in COMPARED if k in resumed})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechunits.train.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--out", help="keep the runs here (default: a temporary directory, removed after)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {','.join(SETTINGS)}")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--stop", type=int, default=13, help="the interrupted run stops (checkpointed) after this step")
    parser.add_argument("--bf16-atol", type=float, default=1e-3, help="max abs difference allowed in bf16")
    args = parser.parse_args(argv)
    tasks, settings = args.tasks.split(","), args.settings.split(",")
    unknown = sorted(set(tasks) - set(TASKS)) + sorted(set(settings) - set(SETTINGS))
    if unknown or not 0 < args.stop < args.steps:
        parser.error(f"unknown tasks/settings {unknown}" if unknown else f"--stop must be in [1, --steps), got {args.stop}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine (use --device cpu)")
    failed = 0
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smoke-")))
        stack.enter_context(deterministic(args.device))
        print(f"device {args.device} (torch {torch.__version__}), {args.steps} steps, resumed after {args.stop}")
        print(f"{'task':<5} {'setting':<8} {'bitwise':<8} {'max_abs_diff':>12} {'allowed':>8}  result")
        for task in tasks:
            for setting in settings:
                if setting == "bf16" and args.device != "cuda":
                    print(f"{task:<5} {setting:<8} {'-':<8} {'-':>12} {'-':>8}  skipped: bf16 autocast needs CUDA")
                    continue
                allowed = args.bf16_atol if setting == "bf16" else 0.0
                bitwise, diff = run_case(task, setting, args.device, out, args.steps, args.stop)
                ok = bitwise or diff <= allowed
                failed += not ok
                print(f"{task:<5} {setting:<8} {str(bitwise).lower():<8} {diff:>12.3g} {allowed:>8.0g}  {'ok' if ok else 'FAILED'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
