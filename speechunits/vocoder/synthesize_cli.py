"""``speechunits synthesize``: a vocoder over a unit set (or a data dir, for mel input) -> audio files.

Example::

    speechunits synthesize --model exp/vocoder/vocoder.pt --units exp/units/test --out exp/resynth/test \\
        [--durations stored|predicted] [--f0 exp/f0/test] [--device auto] [--nj 4]
    speechunits synthesize --model exp/vocoder_mel/vocoder.pt --data data/test --out exp/gl/test --griffin-lim

Output (``DIR`` can be read as a data dir by the judge and the tokenizers)::

    DIR/wav/<id>.flac        one file per utterance (written atomically: resume is per file)
    DIR/manifest.jsonl       id, audio (relative: wav/<id>.flac), text, speaker, num_samples, sample_rate
    DIR/bad_utts.txt         id<TAB>reason of every record that could not be synthesized
    DIR/synthesize.json      the settings DIR is made with (another model or option is refused)
    DIR/provenance.json      written last

Sharded and resumable through :mod:`speechunits.jobs` (``--nj``, ``--job``, ``--cmd``, ``--threads``).
A unit set whose frame grid, vocabulary or silence id differs from the model's is an error
before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.audio import audio_info, load_audio, write_audio
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.device import resolve_device
from speechunits.errors import ConfigError, SpeechUnitsError
from speechunits.io_utils import atomic_write_json, sha256_file
from speechunits.jobs import ItemFileOutput, JobRunner, add_job_arguments, check_job_args, limit_threads
from speechunits.vocoder.data import check_unit_set, data_manifest

VERB = "synthesize"
CLAIM_NAME = "synthesize.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="vocoder.pt written by train-vocoder")
    parser.add_argument("--units", type=Path, default=None, help="unit set to synthesize (unit-input vocoders)")
    parser.add_argument("--data", type=Path, default=None, help="data dir / manifest (mel vocoders: copy synthesis)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--durations", choices=("stored", "predicted"), default="stored",
                        help="stored: the unit set's token spans; predicted: the model's duration predictor on the "
                             "deduplicated ids (gaps become silence tokens)")
    parser.add_argument("--f0", type=Path, default=None, help="F0 dir (extract-f0) for F0-conditioned vocoders")
    parser.add_argument("--griffin-lim", action="store_true",
                        help="mel vocoders: invert the very same log-mels with Griffin-Lim instead of the network "
                             "(the no-training baseline row)")
    parser.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations (default 32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_job_arguments(parser)


@dataclass(frozen=True)
class Item:
    """One utterance to synthesize (a unit record or a manifest utterance)."""

    id: str
    record: Any
    text: str | None
    speaker: str | None


def wav_path(out: Path, utt_id: str) -> Path:
    return out / "wav" / f"{utt_id}.flac"


class WavOutput(ItemFileOutput):
    """``DIR/wav/*.flac`` (one per utterance, finished when it exists) + ``DIR/manifest.jsonl``."""

    where = "wav/"

    def path_of(self, item: Item) -> Path:
        return wav_path(self.out, item.id)

    def merge(self, nj: int) -> list[str]:
        utts = []
        for it in sorted(self.items, key=lambda u: u.id):
            path = wav_path(self.out, it.id)
            if not path.is_file():
                continue
            info = audio_info(path)
            utts.append(Utterance(id=it.id, audio=f"wav/{it.id}.flac", text=it.text, speaker=it.speaker,
                                  num_samples=info.num_samples, sample_rate=info.sample_rate))
        write_jsonl_manifest(utts, self.out / "manifest.jsonl")
        return [u.id for u in utts]


def claim(out: Path, settings: dict[str, Any]) -> None:
    """Refuse a directory holding audio made with other settings (files would mix)."""
    path = out / CLAIM_NAME
    wanted = json.loads(json.dumps(settings, sort_keys=True))
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            found = None
        if found != wanted:
            raise ConfigError(out, f"already holds audio synthesized with other settings ({found}); requested "
                                   f"{wanted}. Use another --out or delete it first")
        return
    atomic_write_json(path, wanted)


class Synthesizer:
    """Loads the model and the inputs once per process; turns one item into a waveform."""

    def __init__(self, args: argparse.Namespace) -> None:
        from speechunits.vocoder.model import load_vocoder

        self.args = args
        self.model = load_vocoder(args.model)
        cfg = self.cfg = self.model.cfg
        if (args.units is None) == (args.data is None):
            raise ConfigError(None, "give exactly one of --units UNIT_SET and --data DATA_DIR")
        if cfg.input == "mel" and args.data is None:
            raise ConfigError(args.model, "a mel vocoder synthesizes from --data DATA_DIR (copy synthesis), not --units")
        if cfg.input != "mel" and args.units is None:
            raise ConfigError(args.model, f"a {cfg.input} vocoder synthesizes from --units UNIT_SET")
        if args.griffin_lim and cfg.input != "mel":
            raise ConfigError(args.model, "--griffin-lim inverts log-mels: it needs a mel vocoder's settings")
        if args.durations == "predicted" and self.model.duration is None:
            raise ConfigError(args.model, "--durations predicted: this vocoder has no duration predictor")
        if cfg.use_f0 and args.f0 is None:
            raise ConfigError(args.model, "the vocoder is F0-conditioned: give --f0 F0_DIR")
        self.f0 = None
        if cfg.use_f0:
            from speechunits.features.f0_store import F0Store
            self.f0 = F0Store(args.f0)
        self.meta = None
        self.embeddings = None
        if args.units is not None:
            from speechunits.units import EmbeddingStore, read_meta

            self.meta = read_meta(args.units)
            check_unit_set(self.meta, cfg, args.units / "meta.json")
            if cfg.input == "syllables" and cfg.syllable_source == "embedding":
                self.embeddings = EmbeddingStore(args.units, self.meta.embedding_dim)

    def items(self) -> list[Item]:
        if self.args.units is not None:
            from speechunits.units import read_units

            recs = read_units(self.args.units, validate=False)
            return [Item(r.id, r, r.text, r.speaker) for r in recs]
        return [Item(u.id, u, u.text, u.speaker) for u in data_manifest(self.args.data)]

    def to(self, device: torch.device) -> None:
        self.model.to(device)
        if hasattr(self.model.generator, "remove_weight_norm"):
            self.model.generator.remove_weight_norm()

    def wave(self, item: Item) -> np.ndarray:
        from speechunits.vocoder.synthesis import (
            f0_stats, inputs_from_mel, inputs_from_record, speaker_index, synthesize_inputs,
        )

        model, cfg = self.model, self.cfg
        f0 = self.f0.get(item.id) if self.f0 is not None else None
        hop_s = self.f0.hop_seconds if self.f0 is not None else None
        speaker = speaker_index(model, item.speaker)
        if self.meta is not None:
            from speechunits.units.record import check_record

            rec = item.record
            check_record(rec, self.meta)
            emb = self.embeddings.get(item.id) if self.embeddings is not None else None
            x = inputs_from_record(rec, self.meta, cfg, embeddings=emb, f0_hz=f0, f0_hop_seconds=hop_s,
                                   speaker=speaker, predict_durations=self.args.durations == "predicted",
                                   model=model, f0_stats=f0_stats(model))
        else:
            from speechunits.features.mel import LogMel

            wav = load_audio(item.record.audio, cfg.sample_rate)
            with torch.no_grad():
                mel = LogMel(cfg.mel)(torch.from_numpy(wav))
            if self.args.griffin_lim:
                from speechunits.features.griffin_lim import griffin_lim

                return griffin_lim(mel, cfg.mel, n_iter=self.args.gl_iters).cpu().numpy()
            x = inputs_from_mel(mel, cfg, f0_hz=f0, f0_hop_seconds=hop_s, speaker=speaker, f0_stats=f0_stats(model))
        if int(x.lengths[0]) <= 0:
            raise ConfigError(None, f"utterance {item.id!r}: nothing to synthesize (no frames)")
        return synthesize_inputs(model, x)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {"verb": VERB, "model_sha256": sha256_file(args.model),
            "units": str(args.units.absolute()) if args.units else None,
            "data": str(args.data.absolute()) if args.data else None,
            "durations": args.durations, "f0": str(args.f0.absolute()) if args.f0 else None,
            "griffin_lim": args.gl_iters if args.griffin_lim else None}


def run(args: argparse.Namespace) -> int:
    check_job_args(args)
    synth = Synthesizer(args)  # every mismatch of model and inputs is an error here, before any work
    items = synth.items()
    settings = settings_of(args)
    out = args.out
    runner = JobRunner(VERB, items=items, out=out, nj=args.nj, output=WavOutput(out, items), effective=settings,
                       inputs=[args.model])
    if not runner.complete():
        out.mkdir(parents=True, exist_ok=True)
        claim(out, settings)
        limit_threads(args.threads)

    def run_shard(job: int) -> None:
        device = resolve_device(args.device)
        synth.to(device)
        with runner.open_shard(job) as shard:
            for item in shard.todo:
                try:
                    wave = synth.wave(item)
                    if not np.isfinite(wave).all():
                        raise ConfigError(None, "the vocoder produced non-finite samples")
                    write_audio(wav_path(out, item.id), np.clip(wave, -1.0, 1.0), synth.cfg.sample_rate)
                except SpeechUnitsError as err:
                    shard.progress(0, [f"{item.id}\t{' '.join(str(err).split())}"])
                    continue
                shard.progress(1, audio_seconds=len(wave) / synth.cfg.sample_rate)
                shard.pause()

    return runner.run(run_shard, args, add_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"speechunits {VERB}")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
