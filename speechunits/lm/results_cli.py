"""``speechunits lm-results``: the RESULTS.md of ``lm/run.sh`` (see :mod:`speechunits.lm.results`).

Example::

    speechunits lm-results --exp-dir lm/exp/synth --tokenizers "sylber bootstrap frames" \\
        --train-set train --test-sets "test-clean so762" --token-budget 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.lm.results import PROBE_TASKS, collect_row, continuation_section, results_markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment directory and what its rows are."""
    parser.add_argument("--exp-dir", required=True, type=Path, help="lm/exp/<name> of lm/run.sh")
    parser.add_argument("--tokenizers", required=True, help="space-separated tokenizer names, the rows in order")
    parser.add_argument("--train-set", required=True, help="name of the packed training set")
    parser.add_argument("--test-sets", required=True,
                        help="space-separated packed held-out sets; the first fills the main table's perplexity columns")
    parser.add_argument("--token-budget", type=int, default=None, help="training tokens per LM, for the header")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default EXP_DIR/RESULTS.md)")
    parser.add_argument("--continuation", type=Path, default=None,
                        help="lm-continue output dir whose synth/wav/ holds the vocoded prompts and continuations: "
                             "adds a summary and EXP_DIR/continuation.png (spectrograms of the first --figure-utts)")
    parser.add_argument("--figure-utts", type=int, default=2, help="continuations in the figure (default 2)")


def run(args: argparse.Namespace) -> int:
    """Collect the rows, write RESULTS.md and results.json, print the table."""
    rows = [collect_row(args.exp_dir, t, args.train_set, args.test_sets.split()) for t in args.tokenizers.split()]
    counts = {}
    for task in PROBE_TASKS:
        counts[task] = max((r.probes.get(f"lm.{task}", {}).get("n_ids", 0) for r in rows), default=0)
    text = results_markdown(rows, test_sets=args.test_sets.split(), train_set=args.train_set, token_budget=args.token_budget,
                            probe_counts=counts)
    if args.continuation is not None:
        text += continuation_section(args.continuation, args.exp_dir / "continuation.png", args.figure_utts)
    out = args.out or args.exp_dir / "RESULTS.md"
    atomic_write_text(out, text)
    atomic_write_json(out.with_suffix(".json"), [dataclasses.asdict(r) for r in rows])
    print(text)
    print(f"lm-results: wrote {out}")
    return 0
