"""Device helpers shared by every model: pick a device, and bf16 autocast on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from speechunits.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable :class:`torch.device`.

    ``"auto"`` is the first CUDA device when one is available, else the CPU. Asking for CUDA on
    a machine without it (or for a device index it does not have) raises ConfigError.
    """
    if isinstance(device, torch.device):
        spec = str(device)
    else:
        spec = str(device).strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(None, f"device {device!r}: expected auto, cpu, cuda or cuda:N ({err})") from err
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ConfigError(None, f"device {device!r}: expected auto, cpu, cuda or cuda:N, found type {dev.type!r}")
    if not torch.cuda.is_available():
        raise ConfigError(None, f"device {device!r} requested but CUDA is not available on this machine")
    index = 0 if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ConfigError(None, f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device("cuda", index)


def autocast_context(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA when ``enabled``; a no-op context on the CPU or when disabled."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if enabled and dev.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def inference_context(device: torch.device | str, autocast: bool = True) -> Iterator[None]:
    """``torch.inference_mode`` plus :func:`autocast_context` in one ``with``."""
    with torch.inference_mode(), autocast_context(device, autocast):
        yield
