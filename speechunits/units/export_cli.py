"""``speechunits export --units DIR --format kaldi|fairseq|resynth|textless --out PATH``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.units.export import FORMATS, export_units


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, type=Path, help="unit set directory")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, type=Path,
                        help="output file (for textless: a prefix; PREFIX.units and PREFIX.durations are written)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--expand", dest="expand", action="store_true", default=None,
                       help="one id per frame (default for resynth)")
    group.add_argument("--no-expand", dest="expand", action="store_false",
                       help="one id per token (default for kaldi and fairseq)")
    parser.add_argument("--key", default="hubert", help="unit key of resynth lines (default: hubert)")


def run(args: argparse.Namespace) -> int:
    for path in export_units(args.units, args.format, args.out, expand=args.expand, key=args.key):
        print(f"export: wrote {path}", file=sys.stderr)
    return 0
