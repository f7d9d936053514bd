"""``speechunits lm-score``: log-probabilities of every sequence of a packed set under a unit LM.

Example::

    speechunits lm-score --model exp/lm/tiny/model.pt --data exp/lm/data/dev --out exp/lm/tiny/score_dev
    speechunits lm-score --model exp/lm/trigram.json --data exp/lm/data/dev --out exp/lm/trigram/score_dev

Writes ``DIR/scores.jsonl`` (id, sum_logprob, num_predictions, mean_logprob, seconds),
``DIR/summary.json`` (:func:`~speechunits.lm.scoring.corpus_summary` plus the model and data)
and ``DIR/zerospeech.txt`` (``<id> <sum_logprob>`` lines, the ZeroSpeech 2021 submission
format). Data from another unit set, dedup setting or BPE model than the model's training set
is refused with a ConfigError before anything is scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechunits.device import resolve_device
from speechunits.io_utils import atomic_write_json, atomic_write_text, sha256_file
from speechunits.lm.packed import PackedTokens
from speechunits.lm.scoring import TransformerScorer, check_scorer_data, corpus_summary, load_scorer, score_packed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="unit LM: model.pt (train-lm) or an n-gram .json (lm-ngram)")
    parser.add_argument("--data", required=True, help="packed set prefix (lm-pack --out)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for a Transformer (default: auto)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per forward (Transformer)")


def run(args: argparse.Namespace) -> int:
    packed = PackedTokens(args.data)
    scorer = load_scorer(args.model, resolve_device(args.device))
    if isinstance(scorer, TransformerScorer):
        scorer.batch_tokens = int(args.batch_tokens)
    check_scorer_data(scorer, packed, f"model {args.model}", f"data {args.data}")
    scores = score_packed(scorer, packed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scores.jsonl", "".join(json.dumps(s.to_dict()) + "\n" for s in scores))
    atomic_write_text(out / "zerospeech.txt", "".join(f"{s.id} {s.sum_logprob:.6f}\n" for s in scores))
    summary = {**corpus_summary(scores), "model": str(args.model), "model_sha256": sha256_file(args.model),
               "data": str(args.data)}
    atomic_write_json(out / "summary.json", summary)
    print(f"lm-score: {summary['sequences']} sequences, {summary['tokens']} predictions: "
          f"{summary['nll_per_token']:.4f} nats/token (ppl {summary['ppl_per_token']:.2f}), "
          f"{summary['bits_per_second']:.2f} bits/s -> {out}", file=sys.stderr)
    return 0
