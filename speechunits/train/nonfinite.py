"""Bookkeeping of updates skipped under ``nonfinite=skip``: the count, the log, the patience.

One bad batch (an utterance whose features overflow, an attention that collapses once) should
not end a week-long run, but a run whose every step is NaN must not go on silently either. So
each skipped update is counted (``skipped_steps``, checkpointed and logged), written as one line
of ``<out_dir>/nonfinite.jsonl`` and warned on stderr, and an optimizer that skips
``nonfinite_patience`` consecutive steps ends the run with :class:`FloatingPointError`.

The Trainer decides *whether* to skip (it owns the collectives that make the ranks agree); the
:class:`SkipTracker` here only records. Every rank keeps the same counts, so every rank reaches
the patience limit at the same step; only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from speechunits.io_utils import atomic_write_text

NONFINITE_NAME = "nonfinite.jsonl"
SHOWN_IDS = 8  # ids named in the stderr warning; the log line holds them all


class SkipTracker:
    """Count skipped updates, log them (when ``write``), and give up after ``patience`` in a row."""

    def __init__(self, out_dir: str | os.PathLike[str], patience: int, write: bool) -> None:
        self.path = Path(out_dir) / NONFINITE_NAME
        self.patience = patience
        self.write = write
        self.skipped_steps = 0
        self.streaks: dict[str, int] = {}  # optimizer -> consecutive skipped steps

    def start(self, step: int) -> None:
        """Drop the lines of updates ``>= step`` (all of them on a fresh start): a run killed
        after its last checkpoint left them, and the resumed run redoes those updates."""
        if not self.write or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines() if _step_of(line) < step]
        if kept:
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        else:
            self.path.unlink()

    def skipped(self, step: int, optimizer: str, reason: str, position: str, ids: list[str]) -> None:
        """Record that ``optimizer`` skipped update ``step`` (0-based, as ``training_step`` sees it);
        :class:`FloatingPointError` when that makes ``patience`` in a row."""
        self.skipped_steps += 1
        streak = self.streaks[optimizer] = self.streaks.get(optimizer, 0) + 1
        if self.write:
            record = {"step": step, "optimizer": optimizer, "reason": reason, "position": position, "ids": ids}
            with open(self.path, "a", encoding="utf-8") as f:  # one short line per write: an append is enough
                f.write(json.dumps(record) + "\n")
                f.flush()
            shown = ", ".join(ids[:SHOWN_IDS]) + (f", ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")
            print(f"warning: non-finite {reason} at step {step}, optimizer {optimizer!r} ({position}): update skipped "
                  f"({streak} in a row, {self.skipped_steps} in the run); ids: {shown or 'unknown'}", file=sys.stderr)
        if streak >= self.patience:
            raise FloatingPointError(
                f"optimizer {optimizer!r} skipped {streak} consecutive steps with a non-finite loss or gradient "
                f"(nonfinite_patience={self.patience}), the last at step {step} ({position}); see {self.path}"
            )

    def stepped(self, optimizer: str) -> None:
        """``optimizer`` made an update: its run of skips is over."""
        self.streaks.pop(optimizer, None)

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint entries (top-level keys of the checkpoint)."""
        return {"skipped_steps": self.skipped_steps, "skip_streaks": dict(self.streaks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint; one written before skipping existed counts 0."""
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.streaks = {str(k): int(v) for k, v in state.get("skip_streaks", {}).items()}


def _step_of(line: str) -> float:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a line cut by a kill: dropped


def read_nonfinite(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a run's ``nonfinite.jsonl`` (empty when nothing was skipped)."""
    path = Path(out_dir) / NONFINITE_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
