"""The unit LM model file: one ``torch.save`` dict, written atomically::

    {"format": "speechunits.lm/1", "config": UnitLMConfig.to_dict(), "state_dict": UnitLM.state_dict(),
     "producer": <the training set's producer block>, "step": int}

The producer block is what the model was trained on (unit set hash, dedup, BPE model), so
scoring and sampling can refuse data from another codebook (:mod:`speechunits.lm.scoring`).
:func:`load_lm` raises :class:`CheckpointError` naming the file for a missing, truncated or
foreign file (the shared :func:`~speechunits.train.checkpoint.load_torch_file`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import sha256_file
from speechunits.lm.model import UnitLM, UnitLMConfig
from speechunits.train.checkpoint import load_torch_file, save_torch_file

FORMAT = "speechunits.lm/1"


@dataclass
class LMInfo:
    """What a caller needs besides the network."""

    path: Path
    producer: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    sha256: str = ""


def save_lm(path: str | os.PathLike[str], model: UnitLM, producer: dict[str, Any], step: int | None) -> Path:
    """Write ``model`` with the training set's ``producer`` block and ``step`` atomically to ``path``."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return save_torch_file(path, {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state,
                                  "producer": dict(producer or {}), "step": step})


def load_lm(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[UnitLM, LMInfo]:
    """The model (eval mode, on ``device``) and its :class:`LMInfo`."""
    path = Path(path)
    payload = load_torch_file(path, (FORMAT,), "unit LM model file")
    try:
        model = UnitLM(UnitLMConfig.from_dict(dict(payload["config"])))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, ConfigError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"the unit LM file does not fit this toolkit's model: {err}") from err
    info = LMInfo(path, dict(payload.get("producer") or {}), payload.get("step"), sha256_file(path))
    return model.to(device).eval(), info


__all__ = ["FORMAT", "LMInfo", "load_lm", "save_lm"]
