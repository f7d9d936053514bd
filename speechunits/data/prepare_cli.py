"""``speechunits prepare-data``: a corpus in its published layout -> Kaldi data dir + JSONL manifest.

Writes ``DATA_DIR/{wav.scp,text,utt2spk,spk2utt,utt2<label>...}`` and
``DATA_DIR/manifest.jsonl``, then ``provenance.json``. String labels of ``Utterance.extra``
become ``utt2<label>`` files; the manifest keeps every label, structured ones too (SLURP's
``entities`` list). A rerun with the same effective
configuration is skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechunits.audio import audio_info
from speechunits.data.corpora import CORPORA
from speechunits.data.jsonl import MANIFEST_FILE, write_jsonl_manifest
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.provenance import is_complete, write_provenance


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``prepare-data``."""
    splits = "; ".join(f"{c.name}: {', '.join(c.splits)}" for c in CORPORA.values())
    parser.add_argument("--corpus", required=True, choices=sorted(CORPORA), help="corpus layout to read")
    parser.add_argument("--corpus-dir", required=True, type=Path, help="root of the corpus as published")
    parser.add_argument("--split", required=True, help=f"split name ({splits})")
    parser.add_argument("--out", required=True, type=Path, help="output Kaldi data directory")
    parser.add_argument("--alignments", type=Path, default=None, help="TextGrid alignments directory (librispeech)")
    parser.add_argument(
        "--audio-dir", type=Path, default=None, help="audio directory (slurp; default <corpus-dir>/audio/slurp_real)"
    )
    parser.add_argument(
        "--with-durations", action="store_true", help="read audio headers to fill utt2dur/utt2num_samples"
    )


def add_durations(utts: Sequence[Utterance], *, progress: bool = True) -> None:
    """Fill ``num_samples``/``sample_rate``/``duration`` from the audio headers (AudioError if unreadable)."""
    for utt in tqdm(utts, desc="audio headers", unit="utt", file=sys.stderr, disable=not progress or None):
        info = audio_info(utt.audio)
        utt.num_samples, utt.sample_rate, utt.duration = info.num_samples, info.sample_rate, info.duration


def effective_config(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration whose hash decides whether a previous run is complete."""
    def absolute(p: Path | None) -> str | None:
        return None if p is None else str(p.absolute())

    return {
        "stage": "prepare-data",
        "corpus": args.corpus,
        "corpus_dir": absolute(args.corpus_dir),
        "split": args.split,
        "alignments": absolute(args.alignments),
        "audio_dir": absolute(args.audio_dir),
        "with_durations": bool(args.with_durations),
    }


def string_labels(utt: Utterance) -> Utterance:
    """``utt`` with only the string labels of ``extra``: a Kaldi ``utt2<label>`` file holds one string per line."""
    if all(isinstance(v, str) for v in utt.extra.values()):
        return utt
    return replace(utt, extra={k: v for k, v in utt.extra.items() if isinstance(v, str)})


def prepare(args: argparse.Namespace) -> tuple[int, bool]:
    """Run the stage; returns (number of utterances written, whether it was skipped)."""
    config = effective_config(args)
    out = Path(args.out)
    if is_complete(out, config):
        return 0, True
    utts = CORPORA[args.corpus].load(
        args.corpus_dir, args.split, alignments_dir=args.alignments, audio_dir=args.audio_dir
    )
    if args.with_durations:
        add_durations(utts)
    write_kaldi_dir([string_labels(u) for u in utts], out)
    write_jsonl_manifest(utts, out / MANIFEST_FILE)
    inputs = [p for p in (args.corpus_dir, args.alignments, args.audio_dir) if p is not None]
    write_provenance(out, config, inputs)
    return len(utts), False


def run(args: argparse.Namespace) -> int:
    """CLI entry: prepare the data dir, or say that it is already complete."""
    count, skipped = prepare(args)
    if skipped:
        print(f"prepare-data: {args.out} is complete for this configuration; skipped", file=sys.stderr)
    else:
        print(f"prepare-data: wrote {count} utterances of {args.corpus}/{args.split} to {args.out}", file=sys.stderr)
    return 0
