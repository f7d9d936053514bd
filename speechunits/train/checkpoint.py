"""Training checkpoints: atomic single-file saves, validated loads, discovery and pruning.

A checkpoint is ``<out_dir>/checkpoints/step_<NNNNNNNN>.pt``, one ``torch.save`` dict
written through a temporary file and renamed (so a killed job never leaves a partial file
under the final name). It holds the model, optimizer, scheduler, task state, the step, the
data position (epoch, batches consumed in the epoch), the RNG states of every rank and the
config. Loading uses ``weights_only=True``: task state must be tensors and plain Python values.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError
from speechunits.io_utils import atomic_path

FORMAT = "speechunits.train/1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")
REQUIRED_KEYS = ("format", "step", "epoch", "batch_in_epoch", "world_size", "model", "optimizer", "scheduler", "rng", "config")


def checkpoint_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Where a run's checkpoints live."""
    return Path(out_dir) / CHECKPOINT_DIR


def checkpoint_path(out_dir: str | os.PathLike[str], step: int) -> Path:
    """The file name of the checkpoint after ``step`` optimizer steps."""
    return checkpoint_dir(out_dir) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files in ``directory`` (a run dir or its ``checkpoints/``), oldest first.

    Temporary files of interrupted writes are ignored.
    """
    d = Path(directory)
    if (d / CHECKPOINT_DIR).is_dir():
        d = d / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the highest step in ``directory`` (not validated), or None."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path`` (fsynced before the rename)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(path, f"refusing to save an incomplete checkpoint: missing {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; :class:`CheckpointError` names the file for truncated,
    unreadable or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "checkpoint is empty (0 bytes): truncated write?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError/zip errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"truncated or unreadable checkpoint ({type(err).__name__}: {first})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"not a speechunits training checkpoint: expected format {FORMAT!r}, found {found!r}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(path, f"checkpoint lacks required entries {missing}")
    return state


def load_latest_valid(
    directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint in ``directory`` that loads; unreadable newer ones are skipped with a
    warning. None when there are no checkpoints; CheckpointError when none of them loads."""
    ckpts = list_checkpoints(directory)
    errors: list[str] = []
    for path in reversed(ckpts):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as err:
            warnings.warn(f"skipping unusable checkpoint: {err}", stacklevel=2)
            errors.append(str(err))
    if errors:
        raise CheckpointError(directory, "no usable checkpoint: " + "; ".join(errors))
    return None


def prune_checkpoints(directory: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns the deleted."""
    if keep_last <= 0:
        return []
    ckpts = list_checkpoints(directory)
    doomed = ckpts[:-keep_last]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> None:
    """Remove temporary files left by checkpoint writes that were killed."""
    d = checkpoint_dir(directory)
    if d.is_dir():
        for p in d.glob(".step_*.tmp.pt"):
            p.unlink(missing_ok=True)
