"""``speechunits phonemize``: the symbols of every transcript of a corpus, once, for TTS training.

    speechunits phonemize --data DATA_DIR --out OUT.jsonl [--frontend phonemes|characters] [--language en-us]

Writes ``OUT.jsonl`` (``{"id", "text", "symbols"}`` per utterance, sorted by id),
``OUT.bad.txt`` (``id<TAB>reason`` of the utterances left out: no transcript, nothing
pronounceable) and, last, ``OUT.meta.json`` (front end, counts, symbol inventory, the manifest's
fingerprint). Left-out utterances are listed on stderr too; the rest of the corpus goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.data.jsonl import load_manifest
from speechunits.data.utterance import manifest_fingerprint
from speechunits.errors import ManifestError
from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.text.frontend import KINDS, WORD_BOUNDARY, TextFrontend
from speechunits.text.normalize import PHRASE_MARKS
from speechunits.text.symbol_file import bad_path, meta_path, write_symbols

SHOWN_BAD = 20
"""Left-out utterances listed one per line on stderr; the rest are counted (all are in OUT.bad.txt)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="data dir or .jsonl manifest (transcripts in 'text')")
    parser.add_argument("--out", required=True, type=Path, help="symbols file to write (*.jsonl)")
    parser.add_argument("--frontend", choices=KINDS, default="phonemes",
                        help="phonemes (espeak-ng, default) or characters (normalised letters)")
    parser.add_argument("--language", default="en-us", help="espeak-ng language (default en-us)")
    parser.add_argument("--workers", type=int, default=None, help="espeak-ng processes at once (default: CPUs, at most 8)")


def _sounds(symbols: list[str]) -> bool:
    """Whether any symbol is more than a word boundary or a phrase mark."""
    return any(s != WORD_BOUNDARY and s not in PHRASE_MARKS for s in symbols)


def run(args: argparse.Namespace) -> int:
    bad_file, meta_file = bad_path(args.out), meta_path(args.out)
    utts = sorted(load_manifest(args.data, require_text=False), key=lambda u: u.id)
    fe = TextFrontend(args.frontend, args.language, workers=args.workers)
    bad: dict[str, str] = {}
    usable = []
    for utt in utts:
        try:
            fe.normalize(utt.text)
            usable.append(utt)
        except ValueError as err:
            bad[utt.id] = str(err)
    symbols = fe.batch([u.text for u in usable], [u.id for u in usable], progress=True)
    rows = []
    for utt, syms in zip(usable, symbols):
        if _sounds(syms):
            rows.append((utt.id, utt.text or "", syms))
        else:
            bad[utt.id] = f"the {fe.kind} front end gave no symbols but boundaries and marks: {syms!r}"
    if not rows:
        raise ManifestError(args.data, f"no utterance of {len(utts)} has a usable transcript "
                                       f"(first reason: {next(iter(bad.values()), 'none')})")
    write_symbols(args.out, rows)
    atomic_write_text(bad_file, "".join(f"{k}\t{v}\n" for k, v in sorted(bad.items())))
    inventory = sorted({s for _id, _text, syms in rows for s in syms})
    atomic_write_json(meta_file, {
        "frontend": fe.to_dict(), "count": len(rows), "bad": len(bad), "data": str(args.data),
        "manifest_fingerprint": manifest_fingerprint(utts), "inventory": inventory,
    })
    for utt_id, reason in sorted(bad.items())[:SHOWN_BAD]:
        print(f"phonemize: skipped {utt_id}: {reason}", file=sys.stderr)
    if len(bad) > SHOWN_BAD:
        print(f"phonemize: ... and {len(bad) - SHOWN_BAD} more, listed in {bad_file}", file=sys.stderr)
    print(f"phonemize: {len(rows)} utterances, {len(inventory)} symbols ({fe.kind}), {len(bad)} skipped -> {args.out}",
          file=sys.stderr)
    return 0
