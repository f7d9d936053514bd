"""The TTS model file: one ``torch.save`` dict, written atomically::

    {"format": "speechunits.tts/1", "config": TTSConfig.to_dict(), "symbols": SymbolTable.to_dict(),
     "state_dict": Capacitron.state_dict(), "extra": {"speakers": {name: index}, "step": int, "beta": [...]}}

The mel statistics are buffers of the model, so they travel in the state dict.
:func:`load_tts` raises :class:`CheckpointError` naming the file for a missing, truncated,
foreign or mismatched file (the shared :func:`~speechunits.train.checkpoint.load_torch_file`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import sha256_file
from speechunits.text import SymbolTable, TextFrontend
from speechunits.train.checkpoint import load_torch_file, save_torch_file
from speechunits.tts.config import TTSConfig
from speechunits.tts.tacotron import Capacitron

FORMAT = "speechunits.tts/1"


@dataclass
class TTSModelInfo:
    """What inference needs besides the network."""

    path: Path
    table: SymbolTable
    frontend: TextFrontend
    speakers: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def save_tts(path: str | os.PathLike[str], model: Capacitron, table: SymbolTable, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` with its symbol table and ``extra`` atomically to ``path``."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_torch_file(path, {"format": FORMAT, "config": model.cfg.to_dict(), "symbols": table.to_dict(),
                           "state_dict": state, "extra": dict(extra or {})})


def load_tts(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Capacitron, TTSModelInfo]:
    """The model (eval mode, on ``device``) and its :class:`TTSModelInfo`."""
    path = Path(path)
    payload = load_torch_file(path, (FORMAT,), "TTS model file")
    try:
        cfg = TTSConfig.from_dict(payload["config"])
        table = SymbolTable.from_dict(payload["symbols"])
        model = Capacitron(cfg)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, ConfigError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"the TTS model file does not fit this toolkit's model: {err}") from err
    extra = dict(payload.get("extra") or {})
    info = TTSModelInfo(path, table, TextFrontend.from_dict(cfg.frontend), dict(extra.get("speakers") or {}), extra,
                        sha256_file(path))
    return model.to(device).eval(), info


__all__ = ["FORMAT", "TTSModelInfo", "load_tts", "save_tts"]
