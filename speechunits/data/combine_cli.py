"""``speechunits combine-data OUT IN1 IN2 ...``: one data dir from several (Kaldi combine_data.sh).

Utterance ids must be unique across the inputs (LibriSpeech ids are); a duplicate is an
error naming both inputs. Writes the Kaldi files, ``manifest.jsonl`` and provenance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.data.jsonl import MANIFEST_FILE, load_manifests, write_jsonl_manifest
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.provenance import is_complete, write_provenance


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Positional OUT then the input data dirs / manifests."""
    parser.add_argument("out", type=Path, help="data dir to write")
    parser.add_argument("inputs", nargs="+", type=Path, help="Kaldi data dirs or JSONL manifests")


def run(args: argparse.Namespace) -> int:
    """Concatenate the inputs (sorted by id) into OUT, unless OUT is already complete."""
    config = {"verb": "combine-data", "inputs": [str(p.resolve()) for p in args.inputs]}
    if is_complete(args.out, config):
        print(f"combine-data: {args.out} is complete for these inputs; skipped", file=sys.stderr)
        return 0
    utts = sorted(load_manifests(args.inputs, require_text=False), key=lambda u: u.id)
    write_kaldi_dir(utts, args.out)
    write_jsonl_manifest(utts, args.out / MANIFEST_FILE)
    write_provenance(args.out, config, list(args.inputs))
    print(f"combine-data: wrote {len(utts)} utterances from {len(args.inputs)} inputs to {args.out}", file=sys.stderr)
    return 0
