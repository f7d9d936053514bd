"""``speechunits synth-corpus``: generate a synthetic corpus in a real layout; prints its root.

The layout's options decide the plan (:mod:`speechunits.data.synth.layouts`); the job
options (``--nj``, ``--job``, ``--cmd``, ``--threads``) decide how it runs on the sharded-job
runner (:mod:`speechunits.data.synth.corpus_job`, ``docs/jobs.md``). The output is the same
for any of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from speechunits.errors import ConfigError
from speechunits.jobs import add_job_arguments, log_to_stderr

if TYPE_CHECKING:
    from speechunits.data.synth.corpus_job import Plan


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
    parser.add_argument("--layout", required=True, choices=("librispeech", "ljspeech", "fsc", "slurp", "zr2021"))
    parser.add_argument("--out", required=True, type=Path, help="output directory (corpus goes below it)")
    parser.add_argument("--splits", default=None,
                        help="librispeech: NAME:COUNT utterances,... (default train-clean-100:200,dev-clean:40,"
                             "test-clean:40); slurp: sentences per split of train, devel, test "
                             "(default train:200,devel:40,test:40)")
    parser.add_argument("--recordings-per-sentence", type=int, default=2,
                        help="slurp: speakers reading each sentence (default %(default)s)")
    parser.add_argument("--num-utts", type=int, default=100, help="ljspeech: number of clips")
    parser.add_argument("--num-speakers", type=int, default=20, help="fsc: number of speakers")
    parser.add_argument("--utts-per-speaker", type=int, default=10, help="fsc: utterances per speaker")
    parser.add_argument("--espeak-fraction", type=float, default=0.5,
                        help="fsc, slurp: fraction of speakers that are espeak-ng voices (default %(default)s)")
    parser.add_argument("--num-pairs", type=int, default=200,
                        help="zr2021: minimal pairs per task (lexical, syntactic), each spoken by every voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voices", default=None,
                        help="Festival voices (librispeech, fsc, slurp: default kal,ked,slt; zr2021: default kal,slt)")
    parser.add_argument("--voice", default="slt", help="the single Festival voice of ljspeech")
    add_job_arguments(parser)


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan the layout options describe."""
    from speechunits.data.synth.layouts import ZR2021_VOICES, fsc_plan, librispeech_plan, ljspeech_plan, zr2021_plan

    default = ",".join(ZR2021_VOICES) if args.layout == "zr2021" else "kal,ked,slt"
    voices = tuple(v.strip() for v in (args.voices or default).split(",") if v.strip())
    if args.layout == "zr2021":
        return zr2021_plan(args.out, args.num_pairs, seed=args.seed, voices=voices)
    if args.layout == "librispeech":
        splits = parse_splits(args.splits or "train-clean-100:200,dev-clean:40,test-clean:40")
        return librispeech_plan(args.out, splits, seed=args.seed, voices=voices)
    if args.layout == "slurp":
        from speechunits.data.synth.slurp_layout import slurp_plan

        return slurp_plan(args.out, parse_splits(args.splits or "train:200,devel:40,test:40"),
                          recordings_per_sentence=args.recordings_per_sentence, seed=args.seed, voices=voices,
                          espeak_fraction=args.espeak_fraction)
    if args.layout == "ljspeech":
        return ljspeech_plan(args.out, args.num_utts, seed=args.seed, voice=args.voice)
    return fsc_plan(args.out, num_speakers=args.num_speakers, utts_per_speaker=args.utts_per_speaker, seed=args.seed,
                    voices=voices, espeak_fraction=args.espeak_fraction)


def run(args: argparse.Namespace) -> int:
    from speechunits.data.synth.corpus_job import run_plan

    log_to_stderr()
    plan = plan_from_args(args)
    status = run_plan(plan, args)
    if status == 0 and args.job is None:
        print(plan.root)
    return status
