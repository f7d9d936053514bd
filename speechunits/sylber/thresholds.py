"""Sylber's greedy-segmentation thresholds: the defaults (defined once) and how a run picks them.

A threshold given explicitly wins; otherwise the one recorded in the model's checkpoint (by
training or ``tune-segmentation``, see :func:`speechunits.encoders.checkpoints.save_encoder`);
otherwise Sylber's defaults. The 2.6 norm threshold is the crossing point of the reference's
starting speech/non-speech norm statistics (:mod:`speechunits.sylber.thresholder`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

DEFAULT_NORM_THRESHOLD = 2.6
"""Speech/non-speech frame-norm threshold."""

DEFAULT_MERGE_THRESHOLD = 0.8
"""Cosine merge threshold."""

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


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """``--norm-threshold``, ``--merge-threshold`` (None: the checkpoint's, else the default) and ``--reset-count``."""
    parser.add_argument("--norm-threshold", type=float, default=None,
                        help=f"speech/non-speech frame-norm threshold (default: the checkpoint's, "
                             f"else {DEFAULT_NORM_THRESHOLD})")
    parser.add_argument("--merge-threshold", type=float, default=None,
                        help=f"cosine merge threshold (default: the checkpoint's, else {DEFAULT_MERGE_THRESHOLD})")
    parser.add_argument("--reset-count", action="store_true", help="corrected greedy variant (reference quirk off)")


__all__ = ["DEFAULT_MERGE_THRESHOLD", "DEFAULT_NORM_THRESHOLD", "DEFAULT_THRESHOLDS", "add_threshold_arguments",
           "pick_thresholds"]
