"""``speechunits tune-segmentation``: pick a model's segmentation thresholds on a labelled dev set.

Encodes the ``--data`` utterances that have a ``<utt id>.TextGrid`` under ``--alignments``
once, then scores every (norm threshold, merge threshold) pair of the grid, each at its best
constant shift, and reports the best pair by ``--metric``. When the best pair lies on an edge
of the grid, the grid grows one step past that edge and only the new points are swept, up to
``--max-extensions`` times (:func:`speechunits.sylber.threshold_sweep.extend_sweep`); the
report lists the extensions made. ``--export`` writes a copy of the checkpoint whose recorded
segmentation defaults are the chosen thresholds and the chosen pair's boundary shift
(``shift``, seconds added to every boundary), so ``tokenize`` and ``segment`` use them
without flags. The sweep always scores the model's raw boundaries (a shift the checkpoint
already records is not applied first): the exported shift replaces it. Use a dev set, never
the test set you report on.
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechunits.config import parse_grid
from speechunits.data.jsonl import load_manifest
from speechunits.errors import AlignmentError, ConfigError
from speechunits.eval.boundaries import DEFAULT_SHIFT_GRID, DEFAULT_TOLERANCE, interval_boundaries
from speechunits.eval.boundaries_refs import add_scoring_arguments, read_references, reference_spec
from speechunits.sylber.threshold_sweep import (
    MAX_EXTENSIONS,
    METRICS,
    SweepPoint,
    best_point,
    extend_sweep,
    plot_sweep,
    sweep_thresholds,
)
from speechunits.io_utils import atomic_write_json, index_files

if TYPE_CHECKING:
    from speechunits.encoders.model import SpeechEncoder

DEFAULT_NORM_FACTORS = tuple(round(f, 2) for f in np.arange(0.4, 1.41, 0.1))
"""Default norm grid: these multiples of the checkpoint's own norm threshold."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``speechunits tune-segmentation``."""
    parser.add_argument("--model", required=True, type=Path, help="Sylber checkpoint (any layout load_encoder reads)")
    parser.add_argument("--data", required=True, type=Path, help="dev Kaldi data dir or JSONL manifest")
    parser.add_argument("--alignments", required=True, type=Path,
                        help="directory searched recursively for <utt id>.TextGrid")
    add_scoring_arguments(parser)  # --tier, --syllabify-phones, --phone-tier, --word-tier, --phone-map, --matching
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="seconds (default 0.05)")
    parser.add_argument("--norm-grid", default=None,
                        help="MIN:MAX:STEP or comma list of norm thresholds (default: 0.4-1.4 x the checkpoint's)")
    parser.add_argument("--merge-grid", default="0.5:0.9:0.05", help="MIN:MAX:STEP or comma list of merge thresholds")
    parser.add_argument("--shift-grid", default=f"{DEFAULT_SHIFT_GRID[0]}:{DEFAULT_SHIFT_GRID[-1]}:0.005",
                        help="shifts (s) tried for every pair; '0' scores without a shift")
    parser.add_argument("--metric", choices=METRICS, default="f1", help="what the best pair maximises")
    parser.add_argument("--max-extensions", type=int, default=MAX_EXTENSIONS,
                        help="times the grid may grow one step past the edge the best pair lies on "
                             f"(norm > 0, merge in [0, 1)); 0: never (default {MAX_EXTENSIONS})")
    parser.add_argument("--max-utts", type=int, default=0, help="score only the first N aligned utterances (0: all)")
    parser.add_argument("--reset-count", action="store_true", help="corrected greedy variant (reference quirk off)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio seconds per encoder batch")
    parser.add_argument("--json", type=Path, default=None, help="write the whole grid and the best pair here")
    parser.add_argument("--plot", type=Path, default=None, help="heatmap of the metric over the grid (png/pdf/svg)")
    parser.add_argument("--export", type=Path, default=None,
                        help="write a copy of the checkpoint with the chosen thresholds and boundary shift as its "
                             "defaults")


def _references(args: argparse.Namespace) -> tuple[list[Any], dict[str, np.ndarray], list[str]]:
    utts = load_manifest(args.data, require_text=False)
    grids = index_files(args.alignments, ".TextGrid")
    spec = reference_spec(args)
    kept, refs, missing = [], {}, []
    for utt in sorted(utts, key=lambda u: u.id):
        if utt.id not in grids:
            missing.append(utt.id)
            continue
        refs[utt.id] = interval_boundaries(read_references(grids[utt.id], spec, utt.id).spans)
        kept.append(utt)
        if args.max_utts and len(kept) >= args.max_utts:
            break
    if not kept:
        raise AlignmentError(args.alignments, f"no <utt id>.TextGrid found for any of the {len(utts)} "
                                              f"utterances of {args.data}")
    return kept, refs, missing


def tune(args: argparse.Namespace) -> tuple[dict[str, Any], list[SweepPoint], SpeechEncoder]:
    """Encode and sweep; the JSON-ready report (``best`` and every grid point), the points, the model."""
    from speechunits.sylber.segmenter import Segmenter

    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        raise ConfigError(None, f"--tolerance must be a positive number of seconds, got {args.tolerance}")
    if args.max_extensions < 0:
        raise ConfigError(None, f"--max-extensions must be >= 0, got {args.max_extensions}")
    utts, refs, missing = _references(args)
    segmenter = Segmenter(args.model, device=args.device)
    waves, states = segmenter.encode_many([u.audio for u in utts], batch_seconds=args.batch_seconds,
                                          progress=True, desc="tune: encode")
    base = segmenter.norm_threshold
    norm_grid = parse_grid(args.norm_grid, "--norm-grid") if args.norm_grid else tuple(round(f * base, 4) for f in DEFAULT_NORM_FACTORS)
    merge_grid = parse_grid(args.merge_grid, "--merge-grid")
    if any(not 0.0 <= m < 1.0 for m in merge_grid) or any(n <= 0 for n in norm_grid):
        raise ConfigError(None, "merge thresholds must lie in [0, 1) and norm thresholds be positive")
    seconds = sum(len(w) for w in waves) / segmenter.sample_rate
    sweep = partial(sweep_thresholds, {u.id: h for u, h in zip(utts, states)}, refs, frame_rate=segmenter.frame_rate,
                    seconds=seconds, shift_grid=parse_grid(args.shift_grid, "--shift-grid"), tolerance=args.tolerance,
                    reset_count=args.reset_count, matching=args.matching)
    points, extensions = extend_sweep(sweep(norm_grid, merge_grid), norm_grid, merge_grid, sweep, args.metric,
                                      args.max_extensions)
    best = best_point(points, args.metric)
    default = sweep([base], [segmenter.merge_threshold])[0]
    report = {
        "model": str(args.model), "data": str(args.data), "alignments": str(args.alignments),
        **reference_spec(args).describe(), "matching": args.matching,
        "tolerance": args.tolerance, "metric": args.metric, "utterances": len(utts), "seconds": seconds,
        "missing_alignments": len(missing), "missing_ids": missing[:100],
        "checkpoint_defaults": default.as_dict(),
        "max_extensions": args.max_extensions, "grid_extensions": [e.as_dict() for e in extensions],
        "best": best.as_dict(), "grid": [p.as_dict() for p in points],
    }
    return report, points, segmenter.model


def run(args: argparse.Namespace) -> int:
    """Tune, print the best pair against the checkpoint's defaults, write what was asked for."""
    report, points, model = tune(args)
    best, d = report["best"], report["checkpoint_defaults"]
    print(f"tune-segmentation: {report['utterances']} utterances of {args.data}, {len(points)} threshold pairs")
    for e in report["grid_extensions"]:
        print(f"  grid extended: best on the {e['side']} {e['axis'].replace('_', ' ')} edge, "
              f"swept {e['points']} more pair(s) at {e['value']:.4g}")
    if len(report["grid_extensions"]) == args.max_extensions > 0:
        print(f"warning: the grid grew {args.max_extensions} times (--max-extensions) and the best pair may still "
              "lie on its edge; widen --norm-grid/--merge-grid", file=sys.stderr)
    for what, p in (("checkpoint defaults", d), (f"best by {args.metric}", best)):
        print(f"  {what}: norm {p['norm_threshold']:.4g}, merge {p['merge_threshold']:.4g}, "
              f"shift {1000 * p['shift']:+.0f} ms -> P {p['precision']:.1f} R {p['recall']:.1f} "
              f"F1 {p['f1']:.1f} R-val {p['r_value']:.1f}, {p['tokens_per_second']:.2f} tok/s")
    if report["missing_alignments"]:
        print(f"warning: {report['missing_alignments']} utterance(s) of {args.data} have no TextGrid under "
              f"{args.alignments} and were not used", file=sys.stderr)
    if args.json is not None:
        atomic_write_json(args.json, report)
    if args.plot is not None:
        plot_sweep(points, args.plot, args.metric, title=f"{args.metric} on {args.data.name} ({args.model.name})")
    if args.export is not None:
        from speechunits.encoders.checkpoints import save_encoder

        segmentation = {**getattr(model, "segmentation_defaults", {}),
                        "norm_threshold": best["norm_threshold"], "merge_threshold": best["merge_threshold"],
                        "shift": best["shift"]}
        save_encoder(args.export, model.cpu(), segmentation=segmentation)
        print(f"  tuned checkpoint: {args.export} (norm {best['norm_threshold']:.4g}, merge "
              f"{best['merge_threshold']:.4g}, shift {1000 * best['shift']:+.0f} ms)")
    return 0


__all__ = ["add_arguments", "run", "tune"]
