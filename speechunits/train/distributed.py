"""Process-group setup from torchrun's or Slurm's environment, plus the few collectives the loop needs.

Under ``torchrun`` the variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set. Without
them, a task of an ``srun`` step of several tasks (``SLURM_STEP_ID`` set, ``SLURM_NTASKS`` > 1)
takes its place from ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID``, and the
rendezvous address from the step's node list (:func:`slurm_rendezvous`). torchrun's variables
win (``srun torchrun ...`` sets both). Anything else, a one-task Slurm job among them, is a
plain process: rank 0 of 1, which never touches ``torch.distributed``. The backend is NCCL on
CUDA, gloo otherwise.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from speechunits.errors import ConfigError, InternalError
from speechunits.io_utils import sha256_json
from speechunits.slurm import expand_hostlist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int, env: dict[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError("<environment>", f"{name}={raw!r}: expected an integer") from err


SLURM_NODELIST_VARS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")


def slurm_rendezvous(env: dict[str, str] | None = None) -> tuple[str, int]:
    """``(MASTER_ADDR, MASTER_PORT)`` for a Slurm step: the environment's own values where set,
    else the first host of the step's (or job's) node list and ``20000 + SLURM_JOB_ID % 20000``
    (every task of the job computes the same port, and two jobs on one node rarely share one)."""
    env = dict(os.environ) if env is None else env
    addr = env.get("MASTER_ADDR", "").strip()
    if not addr:
        name = next((n for n in SLURM_NODELIST_VARS if env.get(n, "").strip()), None)
        if name is None:
            raise ConfigError("<environment>", "Slurm task without a node list (SLURM_STEP_NODELIST / SLURM_JOB_NODELIST); set MASTER_ADDR")
        addr = expand_hostlist(env[name])[0]
    if env.get("MASTER_PORT", "").strip():
        port = _env_int("MASTER_PORT", 0, env)
    else:
        job = _env_int("SLURM_JOB_ID", -1, env)
        if job < 0:
            raise ConfigError("<environment>", "Slurm task without SLURM_JOB_ID; set MASTER_PORT")
        port = 20000 + job % 20000
    if not 0 < port < 65536:
        raise ConfigError("<environment>", f"MASTER_PORT={port}: expected a TCP port (1-65535)")
    return addr, port


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits, as its environment says, and who said it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "plain"  # plain | torchrun | slurm


def launch_env(env: dict[str, str] | None = None) -> LaunchEnv:
    """Rank, world size and local rank from torchrun's variables, else from an ``srun`` step's
    (see the module doc), else a plain process. Inconsistent values raise :class:`ConfigError`.
    Reads only; :func:`init_distributed` acts on it."""
    env = dict(os.environ) if env is None else env
    if any(env.get(n, "").strip() for n in ("RANK", "WORLD_SIZE")):
        info = LaunchEnv(_env_int("RANK", 0, env), _env_int("WORLD_SIZE", 1, env), _env_int("LOCAL_RANK", 0, env), "torchrun")
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    else:
        ntasks_name = "SLURM_STEP_NUM_TASKS" if env.get("SLURM_STEP_NUM_TASKS", "").strip() else "SLURM_NTASKS"
        ntasks = _env_int(ntasks_name, 1, env)
        if ntasks <= 1 or not env.get("SLURM_PROCID", "").strip():
            return LaunchEnv()
        if not env.get("SLURM_STEP_ID", "").strip():
            # the batch script of an sbatch --ntasks=N job: one process, not a step of N tasks
            print(f"{ntasks_name}={ntasks} but this process is not a task of an srun step (no SLURM_STEP_ID): "
                  "training as one process; start it with srun (or torchrun) to use the job's tasks", file=sys.stderr)
            return LaunchEnv()
        info = LaunchEnv(_env_int("SLURM_PROCID", 0, env), ntasks, _env_int("SLURM_LOCALID", 0, env), "slurm")
        names = ("SLURM_PROCID", ntasks_name, "SLURM_LOCALID")
    if info.world_size < 1:
        raise ConfigError("<environment>", f"{names[1]}={info.world_size}: expected an integer >= 1")
    if not 0 <= info.rank < info.world_size:
        raise ConfigError("<environment>", f"{names[0]}={info.rank} with {names[1]}={info.world_size}: the rank must be in [0, {info.world_size})")
    if not 0 <= info.local_rank < info.world_size:
        raise ConfigError("<environment>", f"{names[2]}={info.local_rank} with {names[1]}={info.world_size}: the local rank must be in [0, {info.world_size})")
    return info


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's (or an srun step's) environment, pick the device and (when the world
    size is > 1) init the process group through ``env://``. Under Slurm it sets
    ``MASTER_ADDR`` / ``MASTER_PORT`` first where they are not set (:func:`slurm_rendezvous`),
    and ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as torchrun would.

    ``device`` forces ``"cpu"`` or ``"cuda"``; by default CUDA is used when available.
    Safe to call twice: an existing process group is reused.
    """
    where = launch_env()
    rank, world_size, local_rank = where.rank, where.world_size, where.local_rank
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if where.source == "slurm":
            addr, port = slurm_rendezvous()
            os.environ.setdefault("MASTER_ADDR", addr)
            os.environ.setdefault("MASTER_PORT", str(port))
            # as torchrun would have set them, for code that asks the environment for the rank
            os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
        backend = "nccl" if use_cuda else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown_distributed() -> None:
    """Destroy the process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0 (and in a plain process)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a plain process)."""
    if _active():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean of ``value`` over ranks; floats come back as floats, tensors as new tensors."""
    if not _active():
        return value.clone() if isinstance(value, torch.Tensor) else float(value)
    is_tensor = isinstance(value, torch.Tensor)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = value.detach().to(device=device, dtype=torch.float64).clone() if is_tensor else torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    if is_tensor:
        return t.to(dtype=value.dtype, device=value.device)
    return float(t.item())


def _all_reduce_number(value: float, op: dist.ReduceOp) -> float:
    """``op`` of a number over ranks (float64, on the device the backend needs)."""
    if not _active():
        return float(value)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return float(t.item())


def all_reduce_sum(value: float) -> float:
    """Sum of a number over ranks."""
    return _all_reduce_number(value, dist.ReduceOp.SUM)


def all_reduce_max(value: float) -> float:
    """Largest value of a number over ranks."""
    return _all_reduce_number(value, dist.ReduceOp.MAX)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a plain process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def assert_same_on_ranks(obj: Any, what: str) -> None:
    """Raise :class:`~speechunits.errors.InternalError` unless every rank holds the same ``obj``
    (compared by a SHA-256 of its canonical JSON; no-op in a plain process). For state that
    DDP ranks must share (a rehearsal memory, teacher targets): a silent disagreement would
    train each rank on different data."""
    hashes = all_gather_object(sha256_json(obj))
    if len(set(hashes)) > 1:
        per_rank = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hashes))
        raise InternalError(None, f"DDP ranks disagree on {what} ({per_rank}); it must be computed identically or broadcast from rank 0")
