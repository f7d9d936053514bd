"""``speechunits convert-manifest IN OUT``: Kaldi data dir <-> JSONL manifest.

The direction follows IN: a directory is read as a Kaldi data dir and written to OUT as a
``.jsonl`` manifest; a ``.jsonl`` file is written to OUT as a Kaldi data dir.
``--with-durations`` fills in missing ``duration``/``num_samples``/``sample_rate`` from the
audio headers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from speechunits.audio import audio_info
from speechunits.data.jsonl import load_manifest, write_jsonl_manifest
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``convert-manifest``."""
    parser.add_argument("input", metavar="IN", help="a Kaldi data directory or a .jsonl manifest")
    parser.add_argument("output", metavar="OUT", help="a .jsonl path (when IN is a directory) or a data directory")
    parser.add_argument(
        "--with-durations",
        action="store_true",
        help="read missing duration/num_samples/sample_rate from the audio headers",
    )
    parser.add_argument(
        "--allow-missing-text",
        action="store_true",
        help="accept a Kaldi 'text' file that lacks some utterances (their text becomes None)",
    )


def fill_durations(utts: Sequence[Utterance]) -> list[Utterance]:
    """Copies of ``utts`` with duration, num_samples and sample_rate read from the audio where missing."""
    out: list[Utterance] = []
    for utt in tqdm(utts, desc="audio headers", unit="utt", file=sys.stderr, disable=not sys.stderr.isatty()):
        if utt.duration is None or utt.num_samples is None or utt.sample_rate is None:
            info = audio_info(utt.audio)
            utt = replace(
                utt,
                num_samples=info.num_samples,
                sample_rate=info.sample_rate,
                duration=info.duration,
                extra=dict(utt.extra),
            )
        out.append(utt)
    return out


def run(args: argparse.Namespace) -> int:
    """Convert IN to OUT; returns 0."""
    src, dst = Path(args.input), Path(args.output)
    if src.is_dir() and dst.suffix != ".jsonl":
        raise ConfigError(dst, "IN is a Kaldi data directory, so OUT must be a .jsonl manifest path")
    if not src.is_dir() and dst.suffix == ".jsonl":
        raise ConfigError(dst, "IN is a .jsonl manifest, so OUT must be a Kaldi data directory, not a .jsonl path")
    utts = load_manifest(src, require_text=not args.allow_missing_text)
    if args.with_durations:
        utts = fill_durations(utts)
    if src.is_dir():
        write_jsonl_manifest(utts, dst)
    else:
        write_kaldi_dir(utts, dst)
    print(f"wrote {len(utts)} utterances to {dst}", file=sys.stderr)
    return 0
