"""``speechunits slu-cil``: run one class-incremental SLU method through all tasks (or, with
``--prepare-only``, build the class split and BPE tokenizer; with ``--first-task-only``, train
the shared first task), once per seed of ``--seeds``. The comparison over methods is
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
    parser.add_argument("--name", help="run name: outputs go to <out-dir>/<name>/seed<k>/ (default: the method); "
                                       "e.g. --method er --name er_m2 memory.fraction=0.02")
    parser.add_argument("--seeds", type=_seed_list, help="comma-separated seeds run one after the other, e.g. 0,1,2 "
                                                         "(default: the config's seed)")
    parser.add_argument("--prepare-only", action="store_true", help="only build the class split and the BPE tokenizer")
    parser.add_argument("--first-task-only", action="store_true",
                        help="only train the shared first task of each seed (first_task.shared=true), "
                             "before several methods start from it in parallel")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="force the device (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. epochs_per_task=5 memory.selection=random train.lr=1e-3")


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated integers, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    from speechunits.errors import ConfigError
    from speechunits.slu.metrics import results_table
    from speechunits.slu.config import load_cil_config
    from speechunits.slu.experiment import prepare_experiment
    from speechunits.slu.protocol import run_first_task, run_protocol
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
    if args.first_task_only:
        if not cfg.first_task.shared:
            print("first_task.shared is false: every method trains its own task 0; nothing to do")
            return 0
        return 0 if run_first_task(cfg, args.data_dir, args.out_dir, seeds=args.seeds, device=args.device) else 1
    if not args.method:
        raise ConfigError("<command line>", "--method is required (or --prepare-only / --first-task-only)")
    name = args.name or args.method
    results = run_protocol(cfg, args.method, args.data_dir, args.out_dir, device=args.device, name=name, seeds=args.seeds)
    rows = {f"{name} seed {seed}": res for seed, res in results.items() if res}
    if rows and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        sys.stdout.write(results_table(rows, columns=TABLE_COLUMNS))
    return 0
