"""``speechunits import-units --format fairseq IN.txt --out DIR --frame-rate 50 [--manifest M]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.units.importers import import_fairseq_units


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="unit lines 'id|u1 u2 ...' (one id per frame)")
    parser.add_argument("--format", default="fairseq", choices=["fairseq", "textlesslib"],
                        help="input format (textlesslib writes the same 'id|units' lines)")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    parser.add_argument("--frame-rate", default="50", help="frames per second: '50' or exactly 'SR/HOP' (default 50)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sample rate the frames are counted at")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="Kaldi dir or JSONL manifest giving audio paths and lengths")
    parser.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (default: max id + 1)")
    parser.add_argument("--kind", default="frame", help="token kind recorded in meta.json (default frame)")


def run(args: argparse.Namespace) -> int:
    n = import_fairseq_units(args.input, args.out, frame_rate=args.frame_rate, sample_rate=args.sample_rate,
                             manifest=args.manifest, vocab_size=args.vocab_size, kind=args.kind)
    print(f"import-units: {n} utterances -> {args.out}", file=sys.stderr)
    return 0
