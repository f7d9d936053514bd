"""``speechunits tts-evaluate``: score one TTS synthesis output directory (one results row).

Example::

    speechunits tts-evaluate --synth exp/tts/vae/synth/transfer --references data/test \\
        --prosody-labels corpus/.synth/ljspeech/utterances.json --judge exp/judge/judge.pt \\
        --out exp/tts/vae/eval/transfer.json

Writes the report (JSON; keys in docs/tts.md) and prints a one-line summary.
Missing or unreadable synthesized audio is listed in the report and on stderr, and left out
of every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechunits.device import resolve_device
from speechunits.errors import ConfigError
from speechunits.text2speech.evaluate import evaluate_tts, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synth", required=True, type=Path, help="synthesis output directory (manifest.jsonl, meta.json)")
    parser.add_argument("--references", required=True, type=Path, nargs="+",
                        help="data dir(s) / manifest(s) of the natural recordings (ids = source_id / reference_id; "
                             "style rows: the test set and the style set)")
    parser.add_argument("--prosody-labels", type=Path,
                        help="the synthetic corpus's .synth/<layout>/utterances.json: transfer correlation against "
                             "the generated prosody (default: against the reference audio's measured prosody)")
    parser.add_argument("--judge", type=Path, help="ASR judge checkpoint (judge.pt from train-judge); omit: no CER/WER")
    parser.add_argument("--beam", type=int, default=1, help="judge beam width (1 = greedy; default 1)")
    parser.add_argument("--sample-rate", type=int,
                        help="rate both sides are compared at (default: each synthesized utterance's own)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the correlations (default 1000)")
    parser.add_argument("--device", default="cpu", help="device of the judge (default cpu)")
    parser.add_argument("--out", required=True, type=Path, help="report JSON to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise ConfigError(None, f"--beam must be >= 1, got {args.beam}")
    if args.bootstrap < 1:
        raise ConfigError(None, f"--bootstrap must be >= 1, got {args.bootstrap}")
    judge = None
    if args.judge is not None:
        from speechunits.asr import load_judge

        judge = load_judge(args.judge, device=str(resolve_device(args.device)))
    report = evaluate_tts(args.synth, args.references, labels=args.prosody_labels, judge=judge, beam=args.beam,
                          sample_rate=args.sample_rate, bootstrap=args.bootstrap, progress=not args.quiet)
    write_report(report, args.out)
    for key in ("missing", "bad", "bad_reference", "bad_attention"):
        for line in report[key]:
            print(f"tts-evaluate: {key}: {line}", file=sys.stderr)
    transfer = report["transfer"]
    summary = {
        "num_rows": report["num_rows"], "num_scored": report["num_scored"], "mcd_db": report["mcd_db"]["value"],
        "ffe_pct": report["ffe_pct"]["value"], "f0_corr": transfer["f0"]["r"], "duration_corr": transfer["duration"]["r"],
        "attention_failure_pct": report["attention"]["failure_pct"]["value"], "kl_nats": report["kl_nats"]["value"],
        "cer": None if report["judge"] is None else report["judge"]["cer"],
        "missing": len(report["missing"]), "bad": len(report["bad"]), "out": str(args.out),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0
