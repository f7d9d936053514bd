"""``speechunits slu-select``: the sweep run with the best valid-split metric, written as loss
overrides (``chosen.txt``) with the sweep table (``SWEEP.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", nargs="+", required=True, type=Path,
                        help="sweep run dirs (holding seed*/results.json) or an experiment dir holding only sweep runs")
    parser.add_argument("--out", required=True, type=Path, help="writes chosen.txt (losses.KEY=VALUE ...) and SWEEP.md here")
    parser.add_argument("--metric", default="valid_aia",
                        help="valid-split metric to maximise, mean over seeds (default valid_aia); test metrics are refused")


def run(args: argparse.Namespace) -> int:
    from speechunits.slu.select import overrides, write_selection

    best, losses = write_selection(args.exp, args.out, args.metric)
    print(f"chosen on the valid split: {best} -> {overrides(losses)} ({args.out / 'chosen.txt'})")
    return 0
