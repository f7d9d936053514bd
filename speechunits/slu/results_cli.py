"""``speechunits slu-results``: the comparison table (AIA, last accuracy, forgetting, BWT, WER)
over the methods run by ``speechunits slu-cil``, with an accuracy-per-task plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", nargs="+", required=True, type=Path,
                        help="method dirs (holding results.json) or experiment dirs holding them")
    parser.add_argument("--out", type=Path, help="also write RESULTS.md and accuracy.png here")


def run(args: argparse.Namespace) -> int:
    from speechunits.slu.results import comparison

    sys.stdout.write(comparison(args.exp, args.out))
    return 0
