"""``speechunits bootstrap-segments``: syllable segments from the acoustic bootstrap segmenter.

Reads a corpus (Kaldi data dir or JSONL manifest), runs
:func:`speechunits.sylber.bootstrap.bootstrap_segments` on every utterance (audio loaded at
16 kHz) and writes a unit set of kind ``syllable`` at frame rate 16000/320 with segments only
(no unit ids, no embeddings) through the unit-set writer of :mod:`speechunits.units`.

Sharding and resuming: utterances sorted by id are dealt round-robin to ``--nj`` shards;
``--job J`` runs shard J only (for parallel jobs), without ``--job`` every unfinished shard is
run and the shards are then merged and validated. A shard is finished when its
``units.J.jsonl`` and its ``bad_utts.J.txt`` exist and its ``shard.J.json`` records the
config hash of this run, so a changed parameter redoes the work. Utterances whose audio
cannot be read are skipped and listed in ``bad_utts.txt`` as ``<id>\\t<reason>``. The
effective config and provenance are written last (``provenance.json``); a complete output
with the same config is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError, SpeechUnitsError
from speechunits.io_utils import atomic_write_json, atomic_write_text, sha256_json
from speechunits.provenance import is_complete, write_provenance
from speechunits.sylber.bootstrap import HOP, SAMPLE_RATE, BootstrapConfig, bootstrap_segments
from speechunits.sylber.segment_sources import AcousticSegmentSource

VERB = "bootstrap-segments"


def effective_config(args: argparse.Namespace, config: BootstrapConfig) -> dict[str, Any]:
    """The config whose hash decides whether existing outputs are reusable."""
    return {"verb": VERB, "data": str(Path(args.data).resolve()), "nj": args.nj, "bootstrap": config.to_dict()}


def shard_of(utts: list[Utterance], job: int, nj: int) -> list[Utterance]:
    """Round-robin shard ``job`` of ``nj`` over utterances sorted by id."""
    return sorted(utts, key=lambda u: u.id)[job::nj]


def segment_utterance(utt: Utterance, config: BootstrapConfig) -> tuple[np.ndarray, int]:
    """(segments, number of 16 kHz samples) of one utterance; raises SpeechUnitsError on bad audio."""
    wave = AcousticSegmentSource.load(utt)
    return bootstrap_segments(wave, SAMPLE_RATE, config), len(wave)


def run_shard(out: Path, job: int, nj: int, utts: list[Utterance], config: BootstrapConfig, cfg_hash: str) -> None:
    """Segment one shard; write ``units.JOB.jsonl`` (through the unit writer) and ``bad_utts.JOB.txt``."""
    from speechunits.units import UnitSetWriter

    bad: list[str] = []
    writer = UnitSetWriter(out, kind="syllable", sample_rate=SAMPLE_RATE, hop=HOP, job=job, nj=nj,
                           producer={"segmenter": "acoustic-bootstrap", "config": config.to_dict()})
    with writer:
        for utt in tqdm(utts, desc=f"{VERB} job {job}/{nj}", unit="utt", file=sys.stderr,
                        disable=not sys.stderr.isatty()):
            try:
                seg, num_samples = segment_utterance(utt, config)
            except SpeechUnitsError as err:
                bad.append(f"{utt.id}\t{err}")
                continue
            writer.add(id=utt.id, audio=utt.audio, num_samples=num_samples, sample_rate=SAMPLE_RATE,
                       starts=seg[:, 0].tolist(), ends=seg[:, 1].tolist(), speaker=utt.speaker, text=utt.text)
    atomic_write_text(out / f"bad_utts.{job}.txt", "".join(line + "\n" for line in bad))
    atomic_write_json(out / f"shard.{job}.json", {"config_hash": cfg_hash, "utterances": len(utts), "bad": len(bad)})


def shard_done(out: Path, job: int, cfg_hash: str) -> bool:
    """True when shard ``job`` finished under the same config."""
    marker = out / f"shard.{job}.json"
    if not (marker.is_file() and (out / f"units.{job}.jsonl").is_file() and (out / f"bad_utts.{job}.txt").is_file()):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("config_hash") == cfg_hash
    except (OSError, ValueError):
        return False


def finish(out: Path, nj: int, effective: dict[str, Any], data: Path) -> int:
    """Merge and validate the shards, gather ``bad_utts.txt``, write provenance; returns #bad."""
    from speechunits.units import merge_shards

    merge_shards(out, nj)
    bad = "".join((out / f"bad_utts.{j}.txt").read_text(encoding="utf-8") for j in range(nj))
    atomic_write_text(out / "bad_utts.txt", bad)
    for j in range(nj):
        (out / f"bad_utts.{j}.txt").unlink()
        (out / f"shard.{j}.json").unlink()
    write_provenance(out, effective, inputs=[data])
    return bad.count("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``speechunits bootstrap-segments``: I/O, sharding, and every BootstrapConfig field."""
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    parser.add_argument("--nj", type=int, default=1, help="number of shards")
    parser.add_argument("--job", type=int, default=None, help="run only this shard (0-based); merge later")
    defaults = BootstrapConfig()
    group = parser.add_argument_group("segmenter parameters (see speechunits.sylber.bootstrap)")
    for f in fields(BootstrapConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                           default=getattr(defaults, f.name), help=f"default {getattr(defaults, f.name)}")


def run(args: argparse.Namespace) -> int:
    """Segment (the missing shards of) a corpus and assemble the unit set."""
    from speechunits.data.jsonl import load_manifest

    if args.nj < 1 or (args.job is not None and not 0 <= args.job < args.nj):
        raise ConfigError(None, f"need --nj >= 1 and 0 <= --job < --nj, got --nj {args.nj} --job {args.job}")
    try:
        config = BootstrapConfig(**{f.name: getattr(args, f.name) for f in fields(BootstrapConfig)})
    except ValueError as err:
        raise ConfigError(None, str(err)) from err
    out: Path = args.out
    effective = effective_config(args, config)
    if is_complete(out, effective):
        print(f"{VERB}: {out} is complete for this config; nothing to do", file=sys.stderr)
        return 0
    cfg_hash = sha256_json(effective)
    utts = load_manifest(args.data, require_text=False)
    jobs = [args.job] if args.job is not None else list(range(args.nj))
    for job in jobs:
        if shard_done(out, job, cfg_hash):
            continue
        run_shard(out, job, args.nj, shard_of(utts, job, args.nj), config, cfg_hash)
    if args.job is not None:
        return 0
    num_bad = finish(out, args.nj, effective, Path(args.data))
    if num_bad:
        print(f"{VERB}: skipped {num_bad} utterance(s) with bad audio; see {out / 'bad_utts.txt'}", file=sys.stderr)
    return 0


__all__ = ["add_arguments", "run", "run_shard", "segment_utterance", "shard_of"]
