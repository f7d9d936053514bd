"""``speechunits bootstrap-segments``: syllable segments from the acoustic bootstrap segmenter.

Reads a corpus (Kaldi data dir or JSONL manifest), runs
:func:`speechunits.sylber.bootstrap.bootstrap_segments` on every utterance (audio loaded at
16 kHz) and writes a unit set of kind ``syllable`` at frame rate 16000/320 with segments only
(no unit ids, no embeddings) through the unit-set writer of :mod:`speechunits.units`. Each
record holds the audio file's own ``num_samples`` and ``sample_rate`` (as the unit format
says, so ``validate-units --check-audio`` accepts it), whatever rate the frames are counted at:
from the file's header (a manifest's claim is not needed: the file is read anyway); for a Kaldi
pipe command, from the manifest when it records them (else the command's output header). A
decoded length that disagrees with them is a bad utterance.

Sharding, resuming and merging are the job runner's (:mod:`speechunits.jobs` with the unit-set
output of :mod:`speechunits.units.shard_output`, ``docs/jobs.md``): utterances sorted by id are dealt round-robin to ``--nj`` shards; ``--job J``
runs shard J only; without ``--job`` the unfinished shards run (``--nj N > 1``: as N local
subprocesses) and are then merged and validated. A shard killed mid-way continues after its
last written utterance; a shard record ``bootstrap-segments.J.json`` of another config makes
the shard start over. Utterances whose audio cannot be read are listed in ``bad_utts.txt``
as ``<id>\t<reason>``. The effective config and provenance are written last
(``provenance.json``); a complete output with the same config is skipped.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.audio import audio_info, is_pipe_command, resampled_length
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError, ConfigError, SpeechUnitsError
from speechunits.jobs import JobRunner, add_job_arguments, check_job_args, limit_threads, log_to_stderr
from speechunits.units.shard_output import UnitShardWriter, unit_set_runner
from speechunits.sylber.bootstrap import HOP, SAMPLE_RATE, BootstrapConfig, bootstrap_segments
from speechunits.sylber.segment_sources import AcousticSegmentSource

VERB = "bootstrap-segments"


def effective_config(args: argparse.Namespace, config: BootstrapConfig) -> dict[str, Any]:
    """The config whose hash decides whether existing outputs are reusable."""
    return {"verb": VERB, "data": str(Path(args.data).resolve()), "nj": args.nj, "bootstrap": config.to_dict()}


def file_length(utt: Utterance) -> tuple[int, int]:
    """(samples, sample rate) of the utterance's audio: the file's header; for a pipe command the
    manifest's values when recorded (running the command once more costs a decode)."""
    if is_pipe_command(utt.audio) and utt.num_samples is not None and utt.sample_rate is not None:
        return int(utt.num_samples), int(utt.sample_rate)
    info = audio_info(utt.audio)
    return info.num_samples, info.sample_rate


def segment_utterance(utt: Utterance, config: BootstrapConfig) -> tuple[np.ndarray, int, int]:
    """(segments, samples, sample rate) of one utterance, the last two the audio file's own;
    raises SpeechUnitsError on bad audio (a length that disagrees with the manifest/header included)."""
    num_samples, sample_rate = file_length(utt)
    wave = AcousticSegmentSource.load(utt)
    expected = resampled_length(num_samples, sample_rate, SAMPLE_RATE)
    if len(wave) != expected:
        raise AudioError(utt.audio, f"decoded {len(wave)} samples at {SAMPLE_RATE} Hz but the manifest/header gives "
                                    f"{num_samples} samples at {sample_rate} Hz ({expected} at {SAMPLE_RATE} Hz); "
                                    "the manifest is stale or the file is damaged")
    return bootstrap_segments(wave, SAMPLE_RATE, config), num_samples, sample_rate


def run_shard(runner: JobRunner[UnitShardWriter], job: int, config: BootstrapConfig,
              source_manifest: str | None = None) -> None:
    """Segment the unfinished utterances of shard ``job`` into ``units.JOB.jsonl`` and ``bad_utts.JOB.txt``."""
    with runner.open_shard(job, kind="syllable", sample_rate=SAMPLE_RATE, hop=HOP, source_manifest=source_manifest,
                           producer={"segmenter": "acoustic-bootstrap", "config": config.to_dict()}) as shard:
        for utt in shard.todo:
            try:
                seg, num_samples, sample_rate = segment_utterance(utt, config)
            except SpeechUnitsError as err:
                shard.progress(0, [f"{utt.id}\t{err}"])
                continue
            shard.writer.add(id=utt.id, audio=utt.audio, num_samples=num_samples, sample_rate=sample_rate,
                             starts=seg[:, 0].tolist(), ends=seg[:, 1].tolist(), speaker=utt.speaker, text=utt.text)
            shard.progress(1, audio_seconds=num_samples / sample_rate)
            shard.pause()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``speechunits bootstrap-segments``: I/O, jobs, and every BootstrapConfig field."""
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--out", required=True, type=Path, help="unit set directory to write")
    add_job_arguments(parser)
    defaults = BootstrapConfig()
    group = parser.add_argument_group("segmenter parameters (see speechunits.sylber.bootstrap)")
    for f in fields(BootstrapConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                           default=getattr(defaults, f.name), help=f"default {getattr(defaults, f.name)}")


def run(args: argparse.Namespace) -> int:
    """Segment (the unfinished shards of) a corpus; without ``--job`` also merge and validate."""
    from speechunits.data.jsonl import load_manifest

    check_job_args(args)
    try:
        config = BootstrapConfig(**{f.name: getattr(args, f.name) for f in fields(BootstrapConfig)})
    except ValueError as err:
        raise ConfigError(None, str(err)) from err
    log_to_stderr()
    limit_threads(args.threads)
    utts = load_manifest(args.data, require_text=False)
    runner = unit_set_runner(VERB, utts=utts, out=Path(args.out), nj=args.nj,
                             effective=effective_config(args, config), inputs=[Path(args.data)])
    return runner.run(lambda job: run_shard(runner, job, config, str(args.data)), args, add_arguments)


__all__ = ["add_arguments", "effective_config", "file_length", "run", "run_shard",
           "segment_utterance"]
