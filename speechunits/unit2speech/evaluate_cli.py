"""``speechunits evaluate-synthesis``: score one system's synthesized test set (one results row).

Example::

    speechunits evaluate-synthesis --name "mel vocoder" --synth exp/u2s/synth/mel/test-clean \\
        --reference data/test-clean --judge exp/u2s/judge/judge.pt \\
        [--input-units exp/units/test-clean --rerecognized exp/u2s/retok/mel/test-clean] \\
        --out exp/u2s/eval/mel.json

Writes the report (JSON: corpus figures, per-utterance figures and judge hypotheses, missing
and unreadable utterances) and prints its one-line summary. ``--synth`` may be the reference
itself: that is the ground-truth row (MCD 0, the judge's own CER on real audio).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechunits.device import resolve_device
from speechunits.eval.rerecognition import rerecognition_scores
from speechunits.unit2speech.evaluate import evaluate_synthesis, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="row name in the results table")
    parser.add_argument("--synth", required=True, type=Path, help="data dir / manifest of the synthesized audio")
    parser.add_argument("--reference", required=True, type=Path, help="data dir / manifest of the ground truth (with text)")
    parser.add_argument("--judge", type=Path, help="ASR judge checkpoint (judge.pt from train-judge); omit: no CER/WER")
    parser.add_argument("--beam", type=int, default=1, help="judge beam width (1 = greedy; default 1)")
    parser.add_argument("--input-units", type=Path, help="unit set the audio was synthesized from (re-recognition)")
    parser.add_argument("--rerecognized", type=Path, help="unit set of the synthesized audio, same tokenizer")
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate both sides are compared at (default 16000)")
    parser.add_argument("--limit", type=int, help="score only the first N reference ids")
    parser.add_argument("--device", default="cpu", help="device of the judge (default cpu)")
    parser.add_argument("--out", required=True, type=Path, help="report JSON to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if (args.input_units is None) != (args.rerecognized is None):
        print("evaluate-synthesis: --input-units and --rerecognized go together", file=sys.stderr)
        return 2
    judge = None
    if args.judge is not None:
        from speechunits.asr import load_judge

        judge = load_judge(args.judge, device=str(resolve_device(args.device)))
    report = evaluate_synthesis(args.name, args.synth, args.reference, judge=judge, beam=args.beam,
                                sample_rate=args.sample_rate, limit=args.limit, progress=not args.quiet)
    if args.input_units is not None:
        report.rerecognition = rerecognition_scores(args.input_units, args.rerecognized)
    write_report(report, args.out)
    summary = {k: v for k, v in report.to_dict().items() if k not in ("utterances", "missing", "bad")}
    summary["missing"], summary["bad"] = len(report.missing), len(report.bad)
    print(json.dumps(summary, sort_keys=True))
    return 0
