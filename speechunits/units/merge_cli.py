"""``speechunits merge-units DIR --nj N``: merge ``units.JOB.jsonl`` shards into one validated unit set."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechunits.errors import ConfigError
from speechunits.units.writer import merge_shards


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit_dir", type=Path, help="directory holding units.{0..N-1}.jsonl and meta.{0..N-1}.json")
    parser.add_argument("--nj", type=int, required=True, help="number of shards written")


def run(args: argparse.Namespace) -> int:
    if args.nj < 1:
        raise ConfigError(None, f"--nj must be >= 1, got {args.nj}")
    print(merge_shards(args.unit_dir, args.nj).summary())
    return 0
