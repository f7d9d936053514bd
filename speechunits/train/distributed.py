"""Process-group setup from torchrun's environment, plus the few collectives the loop needs.

Under ``torchrun`` the variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set; a plain
process is rank 0 of 1 and never touches ``torch.distributed``. The backend is NCCL on CUDA,
gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from speechunits.errors import ConfigError, InternalError
from speechunits.io_utils import sha256_json


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


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError("<environment>", f"{name}={raw!r}: expected an integer") from err


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's env vars, pick the device and (when WORLD_SIZE > 1) init the process group.

    ``device`` forces ``"cpu"`` or ``"cuda"``; by default CUDA is used when available.
    Safe to call twice: an existing process group is reused.
    """
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
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


def all_reduce_sum(value: float) -> float:
    """Sum of a number over ranks."""
    if not _active():
        return float(value)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


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
