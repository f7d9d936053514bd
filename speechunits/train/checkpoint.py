"""Training checkpoints: atomic single-file saves, validated loads, discovery and pruning.

A checkpoint is ``<out_dir>/checkpoints/step_<NNNNNNNN>.pt``, one ``torch.save`` dict
written through a temporary file and renamed (so a killed job never leaves a partial file
under the final name). It holds the trained modules, optimizers, schedulers, task state, the
step, the data position (epoch, batches consumed in the epoch), the RNG states of every rank
and the config. Loading uses ``weights_only=True``: task state must be tensors and plain
Python values.

Format 2 keeps format 1's entries and adds a task's further modules and optimizers beside
them (:func:`pack_trained_state`): ``model``, ``optimizer`` and ``scheduler`` still hold
``task.model`` and the first declared optimizer (the only one unless the task declares
several), so whatever reads a format-1 checkpoint's model reads a format-2 one's, and format-1
checkpoints, which existing runs hold, resume as runs with one optimizer named ``main``.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from speechunits.errors import CheckpointError
from speechunits.io_utils import atomic_path
from speechunits.train.optim import DEFAULT_NAME, PRIMARY_MODULE

FORMAT = "speechunits.train/2"
READABLE_FORMATS = ("speechunits.train/1", FORMAT)
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")
REQUIRED_KEYS = ("format", "step", "epoch", "batch_in_epoch", "world_size", "model", "optimizer", "scheduler", "rng", "config")


class OptimizerState(NamedTuple):
    """One optimizer's saved state, and its scheduler's (None when it has none)."""

    name: str
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None


def pack_trained_state(modules: dict[str, dict[str, Any]], optimizers: list[OptimizerState]) -> dict[str, Any]:
    """Checkpoint entries for the trained modules (by task attribute; ``model`` among them) and
    the optimizers in step order: the primary ones under format 1's keys, the rest beside them."""
    first, *rest = optimizers
    return {
        "model": modules[PRIMARY_MODULE],
        "extra_modules": {k: v for k, v in modules.items() if k != PRIMARY_MODULE},
        "optimizer_name": first.name,
        "optimizer": first.optimizer,
        "scheduler": first.scheduler,
        "extra_optimizers": [o._asdict() for o in rest],
    }


def unpack_trained_state(state: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[OptimizerState]]:
    """Inverse of :func:`pack_trained_state`; a format-1 checkpoint is one module and one
    optimizer named :data:`~speechunits.train.optim.DEFAULT_NAME`."""
    modules = {PRIMARY_MODULE: state["model"], **state.get("extra_modules", {})}
    optimizers = [OptimizerState(state.get("optimizer_name", DEFAULT_NAME), state["optimizer"], state["scheduler"])]
    optimizers += [OptimizerState(**o) for o in state.get("extra_optimizers", [])]
    return modules, optimizers


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
    return save_torch_file(path, state)


def save_torch_file(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` of ``obj`` to ``path`` atomically (parent created, fsynced before the rename).
    The one writer of the toolkit's torch files: training checkpoints, vocoders, the ASR judge."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return path


ZIP_MAGIC = b"PK\x03\x04"


def check_torch_zip(path: str | os.PathLike[str], what: str) -> None:
    """Verify the CRC-32 of every member of a zip-format torch file before ``torch.load``, which
    never checks them: a byte changed in a tensor's data (disk, copy or transfer damage) would
    otherwise load as silently different weights. :class:`CheckpointError` names the file and the
    damaged member. Legacy (pre-zip, pickle) torch files carry no checksum and are left to
    ``torch.load``; so is a missing file or one whose zip directory cannot be read (``torch.load``
    fails on it, and the caller reports that).
    Members written with ``torch.utils.serialization.config.save.compute_crc32`` off (CRC 0)
    are skipped."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                return
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # missing, unreadable, or no zip directory: torch.load raises, and the caller reports it
    with archive:
        for info in archive.infolist():
            if info.CRC == 0 and info.file_size:
                continue
            try:
                with archive.open(info) as member:
                    while member.read(1 << 24):
                        pass
            except Exception as err:  # BadZipFile (bad CRC-32, bad local header), EOFError, NotImplementedError ...
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise CheckpointError(path, f"damaged {what}: member {info.filename!r} does not match its "
                                            f"CRC-32 or cannot be read ({type(err).__name__}: {first}); "
                                            "the file changed after it was written") from err


def load_torch_file(path: str | os.PathLike[str], formats: Sequence[str], what: str,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict saved at ``path`` by :func:`save_torch_file` whose ``"format"`` is one of ``formats``
    (``weights_only=True``). :class:`CheckpointError` names the file when it is missing, empty,
    truncated, unreadable or damaged (a member failing its CRC-32: :func:`check_torch_zip`), or
    another kind of file; ``what`` names the kind in the message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"{what} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(path, f"{what} is empty (0 bytes): truncated write?")
    check_torch_zip(path, what)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError/zip errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"truncated or unreadable {what} ({type(err).__name__}: {first})") from err
    if not isinstance(state, dict) or state.get("format") not in formats:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"not a {what}: expected format {' or '.join(map(repr, formats))}, "
                                    f"found {found!r}")
    return state


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; :class:`CheckpointError` names the file for truncated,
    unreadable or foreign files."""
    state = load_torch_file(path, READABLE_FORMATS, "speechunits training checkpoint", map_location)
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


def tensor_leaves(state: Any, prefix: str = "") -> dict[str, Tensor]:
    """Every tensor in a nested checkpoint entry (dicts, lists, tuples) by its path, e.g.
    ``optimizer.state.0.exp_avg``: what a comparison of two checkpoints walks."""
    if isinstance(state, Tensor):
        return {prefix: state}
    items: Any = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    out: dict[str, Tensor] = {}
    for key, value in items:
        out.update(tensor_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
