"""Sylber's greedy-segmentation thresholds (and boundary shift): the defaults (defined once) and how a run picks them.

A threshold given explicitly wins; otherwise the one recorded in the model's checkpoint (by
training or ``tune-segmentation``, see :func:`speechunits.encoders.checkpoints.save_encoder`);
otherwise Sylber's defaults. The 2.6 norm threshold is the crossing point of the reference's
starting speech/non-speech norm statistics (:mod:`speechunits.sylber.thresholder`). The
boundary shift (seconds added to every boundary, :mod:`speechunits.sylber.boundary_shift`)
follows the same rule: ``--shift``, else the checkpoint's ``shift`` (stored by
``tune-segmentation --export``), else 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

DEFAULT_NORM_THRESHOLD = 2.6
"""Speech/non-speech frame-norm threshold."""

DEFAULT_MERGE_THRESHOLD = 0.8
"""Cosine merge threshold."""

DEFAULT_SHIFT = 0.0
"""Boundary shift (s) of a checkpoint that records none."""

DEFAULT_THRESHOLDS: dict[str, float] = {"norm_threshold": DEFAULT_NORM_THRESHOLD,
                                        "merge_threshold": DEFAULT_MERGE_THRESHOLD}
"""The two defaults by keyword, as checkpoints record them."""


def pick_thresholds(recorded: Mapping[str, float], norm_threshold: float | None = None,
                    merge_threshold: float | None = None) -> tuple[float, float]:
    """(norm, merge): the explicit value, else the recorded one, else the default."""
    merged = {**DEFAULT_THRESHOLDS, **{k: float(v) for k, v in recorded.items() if k in DEFAULT_THRESHOLDS}}
    norm = merged["norm_threshold"] if norm_threshold is None else float(norm_threshold)
    merge = merged["merge_threshold"] if merge_threshold is None else float(merge_threshold)
    return norm, merge


def pick_shift(recorded: Mapping[str, float], shift: float | None = None) -> float:
    """Boundary shift (s): the explicit value, else the recorded ``shift``, else 0."""
    if shift is not None:
        return float(shift)
    return float(recorded.get("shift", DEFAULT_SHIFT))


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """``--norm-threshold``, ``--merge-threshold``, ``--shift`` (None: the checkpoint's, else the default)
    and ``--reset-count``."""
    parser.add_argument("--norm-threshold", type=float, default=None,
                        help=f"speech/non-speech frame-norm threshold (default: the checkpoint's, "
                             f"else {DEFAULT_NORM_THRESHOLD})")
    parser.add_argument("--merge-threshold", type=float, default=None,
                        help=f"cosine merge threshold (default: the checkpoint's, else {DEFAULT_MERGE_THRESHOLD})")
    parser.add_argument("--shift", type=float, default=None, metavar="SECONDS",
                        help="constant seconds added to every boundary (frame indices: rounded to whole frames), "
                             "clipped to the audio (default: the checkpoint's, stored by tune-segmentation --export, "
                             "else 0)")
    parser.add_argument("--reset-count", action="store_true", help="corrected greedy variant (reference quirk off)")


__all__ = ["DEFAULT_MERGE_THRESHOLD", "DEFAULT_NORM_THRESHOLD", "DEFAULT_SHIFT", "DEFAULT_THRESHOLDS",
           "add_threshold_arguments", "pick_shift", "pick_thresholds"]
