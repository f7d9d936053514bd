#!/usr/bin/env python3
"""Check that SLURP's entity annotations survive the SLU target pipeline (``targets: entities``).

For every record of the given splits of a SLURP clone (text only: ``dataset/slurp/<split>.jsonl``;
no audio is read), it compares

1. the entities parsed from the normalised ``sentence_annotation`` with the gold ``entities``
   spans over ``tokens`` (both normalised like SLU targets);
2. the words of the normalised annotation with the normalised ``sentence`` (what WER scores);
3. the entities after a BPE round trip (a tokenizer trained on the first split's annotations,
   ``--vocab-size`` pieces): encode the target, decode it, parse it again.

Prints one JSON object of counts and agreement rates and the first disagreements; exits 1
when a BPE round trip (3) loses an entity (the pipeline's fault). Disagreements in (1) come
from SLURP's own tokens (``ca n't``, ``i d``) and are only reported. Usage:

    python egs/slurp/local/check_entity_targets.py --corpus-dir /data/slurp --splits devel test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from speechunits.slu.slurp_f1 import parse_annotation
from speechunits.slu.tokenizer import normalize_transcript, train_tokenizer


def gold_entities(record: dict) -> list[tuple[str, str]]:
    """``entities`` spans over ``tokens`` as normalised ``(type, filler)`` pairs (SLURP's tokens
    split clitics, ``restaurant 's``; the sentence writes ``restaurant's``, as the annotation does)."""
    words = {t["id"]: t["surface"] for t in record["tokens"]}
    return [("_".join(normalize_transcript(e["type"]).split()),
             normalize_transcript(" ".join(words[i] for i in e["span"]).replace(" '", "'")))
            for e in record["entities"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", required=True, type=Path, help="SLURP clone (dataset/slurp/<split>.jsonl)")
    parser.add_argument("--splits", nargs="+", default=["devel", "test"], help="splits to check; the first trains the BPE")
    parser.add_argument("--vocab-size", type=int, default=1000)
    args = parser.parse_args(argv)
    records = {s: [json.loads(line) for line in open(args.corpus_dir / "dataset" / "slurp" / f"{s}.jsonl", encoding="utf-8")
                   if line.strip()] for s in args.splits}
    first = args.splits[0]
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_tokenizer([r["sentence_annotation"] for r in records[first]], sorted({r["scenario"] for r in records[first]}),
                              Path(tmp) / "bpe.model", vocab_size=args.vocab_size)
    counts = {"records": 0, "entities": 0, "entities_agree": 0, "words_agree": 0, "bpe_round_trip_agree": 0}
    bad: list[str] = []
    for split, recs in records.items():
        for r in recs:
            target = normalize_transcript(r["sentence_annotation"])
            words, parsed = parse_annotation(target)
            gold = gold_entities(r)
            back = parse_annotation(tok.decode_transcript(tok.encode_target(r["scenario"], r["sentence_annotation"])))[1] \
                if r["scenario"] in tok.intent_ids else parsed
            counts["records"] += 1
            counts["entities"] += len(gold)
            counts["entities_agree"] += parsed == gold
            counts["words_agree"] += words == normalize_transcript(r["sentence"])
            counts["bpe_round_trip_agree"] += back == parsed
            if (parsed != gold or back != parsed) and len(bad) < 5:
                bad.append(f"{split} slurp_id {r['slurp_id']}: gold {gold} parsed {parsed} after BPE {back}")
    n = counts["records"]
    report = {**counts, "entities_agree_rate": counts["entities_agree"] / n, "words_agree_rate": counts["words_agree"] / n,
              "bpe_round_trip_rate": counts["bpe_round_trip_agree"] / n, "bpe_pieces": tok.vocab_size}
    print(json.dumps(report, indent=2))
    for line in bad:
        print(line, file=sys.stderr)
    return 0 if counts["bpe_round_trip_agree"] == n else 1


if __name__ == "__main__":
    sys.exit(main())
