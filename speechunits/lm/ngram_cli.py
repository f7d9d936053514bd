"""``speechunits lm-ngram``: fit an interpolated Kneser-Ney n-gram LM on a packed token set.

Example::

    speechunits lm-ngram --train exp/lm/data/train --out exp/lm/ngram3.json --order 3
    speechunits lm-score --model exp/lm/ngram3.json --data exp/lm/data/dev --out exp/lm/score_dev

The model stores the training set's producer block, so ``lm-score`` refuses data of another
codebook, deduplication or BPE model. It is the baseline the Transformer LM is compared to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speechunits.errors import ConfigError
from speechunits.lm.ngram import NGramLM
from speechunits.lm.packed import PackedTokens
from speechunits.lm.scoring import corpus_summary, score_packed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, type=Path, help="packed training set prefix (from lm-pack)")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (JSON)")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")


def run(args: argparse.Namespace) -> int:
    if args.order < 1:
        raise ConfigError(None, f"--order must be >= 1, got {args.order}")
    data = PackedTokens(args.train)
    model = NGramLM.fit((data[i] for i in range(len(data))), data.vocab_size, args.order, producer=data.producer)
    model.save(args.out)
    grams = [sum(len(ws) for ws in level.table.values()) for level in model.levels]
    train_ppl = corpus_summary(score_packed(model, data))["ppl_per_token"]
    print(f"lm-ngram: wrote {args.out}: order {args.order}, vocab {data.vocab_size}, n-grams per order {grams}, "
          f"train ppl per token {train_ppl:.3f}")
    return 0
