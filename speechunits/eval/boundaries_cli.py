"""``speechunits eval-boundaries``: boundary P/R/F1/R-value, token rates and purity of a unit set.

Each utterance of ``--units`` is paired with ``<utt id>.TextGrid`` found anywhere under
``--alignments``; the ``--tier`` intervals (silence labels excluded) are the reference
syllables, or, with ``--syllabify-phones``, the syllables of the ``--phone-tier``
(:mod:`speechunits.eval.boundaries_refs`). Only the tiers read must be well formed.
Boundaries are paired by ``--matching`` (maximum or nearest-first greedy one-to-one
matching). Utterances without an alignment file are counted and listed, never dropped
silently. Token rates divide by the total audio duration of the evaluated utterances.
When the unit set carries unit ids, syllable and cluster purity are reported as well.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.config import parse_grid
from speechunits.errors import AlignmentError, ConfigError
from speechunits.eval.boundaries import (
    DEFAULT_SHIFT_GRID,
    DEFAULT_TOLERANCE,
    MATCHING_NAMES,
    BoundaryScores,
    evaluate_boundaries,
    interval_boundaries,
    segment_boundaries,
    tokens_per_second,
    tune_shift,
)
from speechunits.eval.boundaries_refs import ReferenceSpec, add_scoring_arguments, read_references, reference_spec
from speechunits.eval.purity import PurityAccumulator, PurityScores
from speechunits.io_utils import atomic_write_json, index_files


@dataclass
class EvalSet:
    """Predicted and reference boundaries of the utterances of a unit set that have alignments."""

    pred: dict[str, np.ndarray] = field(default_factory=dict)
    ref: dict[str, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    without_word_tier: list[str] = field(default_factory=list)
    """Utterances syllabified without their word tier (their TextGrid has none)."""
    seconds: float = 0.0
    pred_tokens: int = 0
    ref_tokens: int = 0
    purity: PurityAccumulator | None = None


def load_eval_set(
    unit_dir: str | os.PathLike[str], alignments: str | os.PathLike[str], reference: ReferenceSpec | str = "syllables"
) -> EvalSet:
    """Read a unit set and its reference syllables (TextGrids found recursively by ``<id>.TextGrid``);
    ``reference`` is a :class:`ReferenceSpec` or the name of a syllable tier."""
    from speechunits.units import read_meta, read_units

    spec = ReferenceSpec(tier=reference) if isinstance(reference, str) else reference
    meta = read_meta(unit_dir)
    frame_rate = meta.frame_rate_hz
    grids = index_files(alignments, ".TextGrid")
    out = EvalSet()
    for rec in read_units(unit_dir):
        utt = rec.id
        if utt not in grids:
            out.missing.append(utt)
            continue
        sylls, ref_iv, used_words = read_references(grids[utt], spec, utt)
        if spec.syllabify_phones and spec.word_tier and not used_words:
            out.without_word_tier.append(utt)
        seg = rec.segments
        out.pred[utt] = segment_boundaries(seg, frame_rate)
        out.ref[utt] = interval_boundaries(ref_iv)
        out.seconds += rec.duration
        out.pred_tokens += len(seg)
        out.ref_tokens += len(sylls)
        units = rec.units
        if units is not None:
            out.purity = out.purity or PurityAccumulator()
            out.purity.add(ref_iv, [iv.label for iv in sylls], seg / frame_rate, units)
    return out


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation the parsed arguments ask for; returns the JSON-ready report."""
    spec = reference_spec(args)
    test = load_eval_set(args.units, args.alignments, spec)
    if not test.ref:
        raise AlignmentError(args.alignments, f"no <utt id>.TextGrid found for any of the {len(test.missing)} "
                                              f"utterances of {args.units}")
    shift, tuned_on = args.shift, None
    if args.tune_shift_on:
        dev = load_eval_set(args.tune_shift_on, args.alignments, spec)
        if not dev.ref:
            raise AlignmentError(args.alignments, f"no alignments for the dev units {args.tune_shift_on}")
        shift, _ = tune_shift(dev.pred, dev.ref, parse_grid(args.shift_grid, "--shift-grid"), args.tolerance,
                              args.matching)
        tuned_on = {"units": str(args.tune_shift_on), "utterances": len(dev.ref), "missing": len(dev.missing)}
    scores = evaluate_boundaries(test.pred, test.ref, args.tolerance, shift, args.matching)
    report: dict[str, Any] = {
        "units": str(args.units),
        "alignments": str(args.alignments),
        **spec.describe(),
        "tolerance": args.tolerance,
        "matching": args.matching,
        "shift": shift,
        "shift_tuned_on": tuned_on,
        "utterances": len(test.ref),
        "missing_alignments": len(test.missing),
        "missing_ids": test.missing[:100],
        **({"utterances_without_word_tier": len(test.without_word_tier)} if spec.syllabify_phones else {}),
        "seconds": test.seconds,
        "boundaries": scores.as_percent(),
        "tokens_per_second": tokens_per_second(test.pred_tokens, test.seconds),
        "ref_tokens_per_second": tokens_per_second(test.ref_tokens, test.seconds),
        "token_rate_denominator": "total audio duration (silence included)",
    }
    if test.purity is not None:
        p: PurityScores = test.purity.scores()
        report["purity"] = {"syllable_purity": 100 * p.syllable_purity, "cluster_purity": 100 * p.cluster_purity,
                            "matched": p.num_matched, "syllable_types": p.num_syllable_types, "clusters": p.num_clusters}
    return report


def format_table(report: dict[str, Any]) -> str:
    """The human-readable table printed by the CLI."""
    b = report["boundaries"]
    head = ["utts", "missing", "P", "R", "F1", "R-val", "tok/s", "ref tok/s", "shift"]
    row = [str(report["utterances"]), str(report["missing_alignments"]), f"{b['precision']:.2f}",
           f"{b['recall']:.2f}", f"{b['f1']:.2f}", f"{b['r_value']:.2f}", f"{report['tokens_per_second']:.2f}",
           f"{report['ref_tokens_per_second']:.2f}", f"{report['shift']:+.3f}"]
    if "purity" in report:
        head += ["SP", "CP"]
        row += [f"{report['purity']['syllable_purity']:.2f}", f"{report['purity']['cluster_purity']:.2f}"]
    widths = [max(len(h), len(r)) for h, r in zip(head, row)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths)), "  ".join(r.rjust(w) for r, w in zip(row, widths))]
    lines.append(f"tolerance {report['tolerance'] * 1000:.0f} ms, {MATCHING_NAMES[report.get('matching', 'max')]}; "
                 "P/R/F1/R-value in %")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``speechunits eval-boundaries``."""
    parser.add_argument("--units", required=True, type=Path, help="unit set directory to evaluate")
    parser.add_argument("--alignments", required=True, type=Path,
                        help="directory searched recursively for <utt id>.TextGrid")
    add_scoring_arguments(parser)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="seconds (default 0.05)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shift", type=float, default=0.0, help="constant seconds added to predicted boundaries")
    group.add_argument("--tune-shift-on", type=Path, default=None,
                       help="dev unit set: pick the shift maximising the R-value there, then apply it")
    parser.add_argument("--shift-grid", default=f"{DEFAULT_SHIFT_GRID[0]}:{DEFAULT_SHIFT_GRID[-1]}:0.005",
                        help="grid for --tune-shift-on: MIN:MAX:STEP or a comma list (s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (and missing-alignment count), optionally write JSON."""
    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        raise ConfigError(None, f"--tolerance must be a positive number of seconds, got {args.tolerance}")
    report = evaluate(args)
    print(format_table(report))
    if report["missing_alignments"]:
        print(f"warning: {report['missing_alignments']} utterance(s) of {args.units} have no TextGrid under "
              f"{args.alignments} and were not scored (e.g. {', '.join(report['missing_ids'][:5])})", file=sys.stderr)
    if report.get("utterances_without_word_tier"):
        print(f"warning: {report['utterances_without_word_tier']} TextGrid(s) have no tier {args.word_tier!r}: "
              "their phones were syllabified across word boundaries (split at silences only)", file=sys.stderr)
    if args.json is not None:
        atomic_write_json(args.json, report)
    return 0


__all__ = ["EvalSet", "add_arguments", "evaluate", "format_table", "load_eval_set", "run"]
