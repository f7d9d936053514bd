"""``speechunits slu-cil``: run one class-incremental SLU method through all tasks (or, with
``--prepare-only``, build the class split and BPE tokenizer). The comparison over methods is
``speechunits slu-results`` (:mod:`speechunits.slu.results_cli`). See docs/slu.md."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from speechunits.slu.train_task import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``slu-cil``."""
    parser.add_argument("--config", type=Path, help="YAML experiment config (recipes/conf/slu_cil_fsc.yaml)")
    parser.add_argument("--method", choices=sorted(METHODS), help="continual-learning method (required unless --prepare-only)")
    parser.add_argument("--data-dir", required=True, type=Path,
                        help="directory holding the data sets named by the config's splits (Kaldi data dirs or <name>.jsonl)")
    parser.add_argument("--out-dir", required=True, type=Path,
                        help="experiment directory: split.json, tokenizer/, <method>/task<t>/, <method>/results.json")
    parser.add_argument("--prepare-only", action="store_true", help="only build the class split and the BPE tokenizer")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="force the device (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. epochs_per_task=5 memory.selection=random train.lr=1e-3")


def run(args: argparse.Namespace) -> int:
    from speechunits.errors import ConfigError
    from speechunits.slu.metrics import results_table
    from speechunits.slu.config import load_cil_config
    from speechunits.slu.experiment import prepare_experiment
    from speechunits.slu.protocol import run_protocol
    from speechunits.slu.results import TABLE_COLUMNS

    cfg = load_cil_config(args.config, args.overrides or [])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.prepare_only:
        data = prepare_experiment(cfg, args.data_dir, args.out_dir)
        print(f"{data.split.name}: {data.split.num_tasks} tasks, {len(data.split.classes)} classes; "
              f"tokenizer {data.tokenizer.path} ({data.tokenizer.vocab_size} pieces); "
              f"{len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test examples")
        return 0
    if not args.method:
        raise ConfigError("<command line>", "--method is required (or --prepare-only)")
    results = run_protocol(cfg, args.method, args.data_dir, args.out_dir, device=args.device)
    if results and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        sys.stdout.write(results_table({args.method: results}, columns=TABLE_COLUMNS))
    return 0
