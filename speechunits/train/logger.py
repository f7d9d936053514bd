"""Training metrics: a ``metrics.jsonl`` log and TensorBoard scalars, written by rank 0 only."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.io_utils import atomic_write_text
from speechunits.killpoints import kill_point

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    """Append one JSON line per logged step and mirror the numbers to TensorBoard.

    On a resumed run (``start_step`` > 0) lines of steps after ``start_step`` left by the
    interrupted run are dropped first, and TensorBoard events after it are purged, so the logs
    describe one run.
    """

    def __init__(self, out_dir: str | os.PathLike[str], enabled: bool, tensorboard: bool = True, start_step: int = 0) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_NAME
        self._writer: Any = None
        if not enabled:
            return
        if start_step > 0 and self.path.is_file():
            self._truncate_after(start_step)
        elif start_step == 0 and self.path.exists():
            self.path.unlink()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(out_dir) / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if int(rec.get("step", 0)) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def log(self, step: int, values: dict[str, Any], prefix: str = "train/") -> None:
        """Record ``values`` (numbers) at ``step``; keys are written as ``<prefix><key>`` to TensorBoard."""
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in values.items()}
        rec = {"step": step, "time": round(time.time(), 3), **{f"{prefix}{k}": v for k, v in clean.items()}}
        line = json.dumps(rec, sort_keys=True, allow_nan=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            kill_point("metrics-line", torn=lambda: (f.write(line[: len(line) // 2]), f.flush()))
            f.write(line)
        if self._writer is not None:
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    self._writer.add_scalar(f"{prefix}{k}", v, step)

    def log_media(self, step: int, audio: Mapping[str, tuple[Any, int]] | None = None,
                  images: Mapping[str, Any] | None = None, prefix: str = "valid/") -> None:
        """Audio clips (``name -> (1-D float wave in [-1, 1], sample_rate)``) and pictures
        (``name -> HxWx3 uint8 array``) to TensorBoard; nothing without a TensorBoard writer."""
        if not self.enabled or self._writer is None:
            return
        for name, (wave, sample_rate) in (audio or {}).items():
            clip = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(1, -1).clamp(-1.0, 1.0)
            self._writer.add_audio(f"{prefix}{name}", clip, step, sample_rate=int(sample_rate))
        for name, picture in (images or {}).items():
            self._writer.add_image(f"{prefix}{name}", np.asarray(picture), step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl`` (empty when absent)."""
    path = Path(out_dir) / METRICS_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def panels_image(panels: Sequence[tuple[str, np.ndarray]], *, shared_scale: bool = False, xlabel: str = "frame",
                 ylabels: Sequence[str] | None = None, width: float = 4.0, height: float = 3.0) -> np.ndarray:
    """Matrices side by side (``imshow``, origin lower) as an HxWx3 uint8 image for :meth:`MetricsLogger.log_media`:
    spectrograms, attention alignments. ``shared_scale``: one colour range for every panel."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * len(panels), height), dpi=80)
    canvas = FigureCanvasAgg(fig)
    lo = float(min(p.min() for _, p in panels)) if shared_scale else None
    hi = float(max(p.max() for _, p in panels)) if shared_scale else None
    for i, (title, matrix) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(matrix, origin="lower", aspect="auto", vmin=lo, vmax=hi, interpolation="none")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if ylabels is not None:
            ax.set_ylabel(ylabels[i])
    fig.tight_layout()
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(buf[..., :3]).astype(np.uint8)
