"""Evaluation metrics: syllable boundary P/R/F1/R-value, token rate, syllable/cluster purity."""

from speechunits.eval.boundaries import (
    BoundaryCounts,
    BoundaryScores,
    evaluate_boundaries,
    interval_boundaries,
    match_boundaries,
    r_value,
    segment_boundaries,
    tokens_per_second,
    tune_shift,
)
from speechunits.eval.purity import PurityAccumulator, PurityScores, match_segments

__all__ = [
    "BoundaryCounts",
    "BoundaryScores",
    "PurityAccumulator",
    "PurityScores",
    "evaluate_boundaries",
    "interval_boundaries",
    "match_boundaries",
    "match_segments",
    "r_value",
    "segment_boundaries",
    "tokens_per_second",
    "tune_shift",
]
