"""``speechunits quantize``: fill the unit ids of a unit set from a k-means codebook.

Example::

    speechunits quantize --units exp/units/train --codebook exp/km/km10000.pt            # in place
    speechunits quantize --units exp/units/train --codebook exp/km/km10000.pt --out exp/units/train_km

In place, the old ``units.jsonl``/``meta.json`` are replaced only once every utterance is
done, so a killed run leaves the old unit set intact. Skips the work when the unit set
(at ``--out``, or in place) already carries this codebook's hash and validates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechunits.errors import UnitFormatError
from speechunits.quantize.apply import quantize_unit_set
from speechunits.quantize.codebook import load_codebook
from speechunits.units import read_meta, validate_unit_set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, type=Path, help="unit set directory with embeddings/")
    parser.add_argument("--codebook", required=True, type=Path, help="codebook written by `speechunits cluster`")
    parser.add_argument("--out", type=Path, default=None, help="write a new unit set here (default: in place)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per distance block (memory bound)")
    parser.add_argument("--force", action="store_true", help="redo even if already quantized with this codebook")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def already_done(target: Path, book_hash: str, k: int) -> bool:
    """True when ``target`` is a valid unit set quantized with the codebook of hash ``book_hash``
    (of ``k`` centroids) by this version: ids ``0..k-1`` plus the silence id ``k``. A set quantized
    before the silence id existed is redone."""
    if not (target / "meta.json").is_file():
        return False
    try:
        meta = read_meta(target)
        if (meta.producer.get("codebook") or {}).get("hash") != book_hash:
            return False
        if meta.vocab_size != k + 1 or meta.special_ids.get("silence") != k:
            return False
        report = validate_unit_set(target)
    except UnitFormatError:
        return False
    return report.num_quantized == report.num_utterances


def run(args: argparse.Namespace) -> int:
    book = load_codebook(args.codebook)
    target = args.out if args.out is not None else args.units
    if not args.force and already_done(target, book.hash, book.k):
        print(f"quantize: {target} is already quantized with codebook {book.hash[:12]}; use --force to redo",
              file=sys.stderr)
        return 0
    report = quantize_unit_set(args.units, book, args.out, device=args.device, chunk_rows=args.chunk_rows,
                               progress=not args.quiet)
    print(report.summary(), file=sys.stderr)
    print(json.dumps({"unit_dir": report.unit_dir, "utterances": report.num_utterances, "tokens": report.num_tokens,
                      "vocab_size": report.vocab_size, "vocab_used": report.vocab_used,
                      "codebook_hash": book.hash}), file=sys.stderr)
    return 0
