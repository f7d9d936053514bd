"""``speechunits validate-units DIR``: check a unit set and print a summary (exit 2 on the first problem)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechunits.units.validate import validate_unit_set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit_dir", type=Path, help="unit set directory (meta.json + units.jsonl)")
    parser.add_argument("--check-audio", action="store_true",
                        help="also check that every audio file exists with the recorded length")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = validate_unit_set(args.unit_dir, check_audio=args.check_audio)
    print(json.dumps(report.to_dict(), indent=2, sort_keys=True) if args.json else report.summary())
    return 0
