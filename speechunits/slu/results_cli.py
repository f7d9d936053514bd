"""``speechunits slu-results``: the comparison of class-incremental SLU runs over seeds.

Finds ``<run>/seed<k>/results.json`` (written by ``speechunits slu-cil``) under the given
experiment, run or seed directories, groups them by run name and prints mean ± sample std
over seeds of task-0 accuracy, AIA, last accuracy, forgetting, BWT, WER (and SLU-F1 on
SLURP), plus the valid-split table; with ``--out``, also ``RESULTS.md``, ``accuracy.png``
and ``matrix.png``. See docs/slu.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", nargs="+", required=True, type=Path,
                        help="experiment dirs (holding <run>/seed<k>/results.json), run dirs (seed<k>/results.json) "
                             "or seed dirs; runs are grouped by name, seeds averaged")
    parser.add_argument("--out", type=Path,
                        help="also write RESULTS.md (tables, column meanings, settings of each run), accuracy.png "
                             "(accuracy on seen classes after each task, mean ± std over seeds) and matrix.png "
                             "(mean accuracy matrix per run) here")


def run(args: argparse.Namespace) -> int:
    from speechunits.slu.results import comparison

    sys.stdout.write(comparison(args.exp, args.out))
    return 0
