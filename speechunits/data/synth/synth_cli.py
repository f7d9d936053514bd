"""``speechunits synth-corpus``: generate a synthetic corpus in a real layout; prints its root."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechunits.errors import ConfigError


def parse_splits(spec: str) -> dict[str, int]:
    """``train-clean-100:200,dev-clean:40`` -> {"train-clean-100": 200, "dev-clean": 40}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, count = part.rpartition(":")
        if not sep or not name or not count.isdigit() or int(count) < 1:
            raise ConfigError(None, f"--splits: expected NAME:COUNT[,NAME:COUNT...], found {part!r}")
        if name in out:
            raise ConfigError(None, f"--splits: split {name!r} given twice")
        out[name] = int(count)
    if not out:
        raise ConfigError(None, "--splits is empty")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", required=True, choices=("librispeech", "ljspeech", "fsc"))
    parser.add_argument("--out", required=True, type=Path, help="output directory (corpus goes below it)")
    parser.add_argument("--splits", default="train-clean-100:200,dev-clean:40,test-clean:40",
                        help="librispeech: NAME:COUNT,... (default %(default)s)")
    parser.add_argument("--num-utts", type=int, default=100, help="ljspeech: number of clips")
    parser.add_argument("--num-speakers", type=int, default=20, help="fsc: number of speakers")
    parser.add_argument("--utts-per-speaker", type=int, default=10, help="fsc: utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs (one festival process each)")
    parser.add_argument("--voices", default="kal,ked,slt", help="Festival voices (librispeech, fsc)")
    parser.add_argument("--voice", default="slt", help="the single Festival voice of ljspeech")


def run(args: argparse.Namespace) -> int:
    from speechunits.data.synth import synthesize_fsc, synthesize_librispeech, synthesize_ljspeech

    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    if args.layout == "librispeech":
        root = synthesize_librispeech(args.out, parse_splits(args.splits), seed=args.seed, nj=args.nj, voices=voices)
    elif args.layout == "ljspeech":
        root = synthesize_ljspeech(args.out, args.num_utts, seed=args.seed, nj=args.nj, voice=args.voice)
    else:
        root = synthesize_fsc(args.out, num_speakers=args.num_speakers, utts_per_speaker=args.utts_per_speaker,
                              seed=args.seed, nj=args.nj, voices=voices)
    print(root)
    return 0
