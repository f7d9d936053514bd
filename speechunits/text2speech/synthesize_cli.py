"""``speechunits tts-synthesize``: a TTS model (+ a mel vocoder, or Griffin-Lim) -> audio files.

Examples::

    speechunits tts-synthesize --model exp/tts/vt150/model.pt --out /tmp/o --text "Hello there." --temperature 0.5
    speechunits tts-synthesize --model M --out O --text "Hello there." --reference ref.wav --reference-text "..."
    speechunits tts-synthesize --model M --out O --data data/test --mode transfer --posterior-mean --nj 4
    speechunits tts-synthesize --model M --out O --data data/test --mode text --seeds 0,1,2 --temperature 1.0
    speechunits tts-synthesize --model M --out O --data data/test --mode style --style-data data/valid

Inputs: one ``--text`` (with an optional ``--reference``), a ``--text-file`` (lines ``id<TAB>text``
or plain text), or a data dir ``--data`` whose utterances give ids, texts and (transfer) the
reference audio. ``--mode style`` pairs each utterance of ``--data`` with a reference of
``--style-data`` (round robin) and that reference's own transcript. Every utterance is made
once per seed of ``--seeds``; ids are ``<id>.s<seed>``.

Output (also a data dir: the judge and ``tts-evaluate`` read it)::

    DIR/wavs/<id>.wav          one file per utterance (written atomically: resume is per file)
    DIR/attention/<id>.npy     float16 [decoder steps, symbols]
    DIR/records/<id>.json      the utterance's manifest line (written last for the utterance); rows with a
                               reference also hold its posterior mean (``prosody_mean``: latent probes)
    DIR/manifest.jsonl         the records, sorted by id (see docs/tts.md for the fields)
    DIR/meta.json              model, its hash, prosody kind, capacity, vocoder
    DIR/bad_utts.txt           id<TAB>reason of every utterance that could not be synthesized

Sharded and resumable through :mod:`speechunits.jobs` (``--nj``, ``--job``, ``--cmd``, ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.audio import write_audio
from speechunits.data.jsonl import load_manifest
from speechunits.device import resolve_device
from speechunits.errors import ConfigError, ManifestError, SpeechUnitsError
from speechunits.io_utils import atomic_path, atomic_write_json, atomic_write_text, sha256_file
from speechunits.jobs import ItemFileOutput, JobRunner, add_job_arguments, check_job_args, limit_threads
from speechunits.tts.model_io import load_tts
from speechunits.tts.synthesis import MODES, SynthesisRequest, check_request, synthesize
from speechunits.vocoder.synthesize_cli import claim

VERB = "tts-synthesize"
MANIFEST = "manifest.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model.pt written by train-tts")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="one sentence to synthesize (id: utt)")
    src.add_argument("--text-file", type=Path, help="lines 'id<TAB>text' or plain sentences (ids utt0001, ...)")
    src.add_argument("--data", type=Path, help="data dir / manifest: ids, texts and (transfer) reference audio")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="text: sample the prior (default without a reference); transfer: a reference of the same "
                             "text (default with --reference, or each --data utterance's own audio); style: a "
                             "reference with its own transcript, new text")
    parser.add_argument("--reference", type=Path, help="reference wav (with --text or --text-file)")
    parser.add_argument("--reference-text", help="the reference's transcript (style transfer with a text-conditioned "
                                                 "posterior: V+T, V+T+S, hierarchical)")
    parser.add_argument("--reference-speaker", help="the reference's speaker (V+T+S posterior; default: --speaker)")
    parser.add_argument("--style-data", type=Path, help="data dir of style references for --data --mode style")
    parser.add_argument("--speaker", help="target speaker of a multi-speaker model (inter-speaker transfer with V+T+S)")
    parser.add_argument("--transfer-level", choices=("z_s", "z_p"), default="z_p",
                        help="hierarchical models: transfer z_s only (z_p sampled from p(z_p|z_s)) or both (default)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="prior sampling temperature (0: the prior mean; default 1)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each utterance is made once per seed")
    parser.add_argument("--posterior-mean", action="store_true", help="use the posterior mean instead of a sample")
    parser.add_argument("--vocoder", type=Path, help="mel vocoder.pt (train-vocoder) with the model's mel settings; "
                                                     "default: Griffin-Lim")
    parser.add_argument("--griffin-lim-iters", type=int, default=32)
    parser.add_argument("--max-utts", type=int, help="only the first N utterances of --data / --text-file")
    parser.add_argument("--max-frames-per-symbol", type=float, default=15.0,
                        help="decoding stops at this many mel frames per input symbol if the stop token never fires")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_job_arguments(parser)


@dataclass(frozen=True)
class Item:
    """One output utterance: the request and where it came from."""

    id: str
    source_id: str
    request: SynthesisRequest
    reference_id: str | None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(None, f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError(None, "--seeds is empty")
    return seeds


def read_text_file(path: Path) -> list[tuple[str, str]]:
    """(id, text) pairs of a text file; ManifestError with file:line for an empty line's text."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        uid, sep, text = line.partition("\t")
        if not sep:
            uid, text = f"utt{len(out) + 1:04d}", line
        if not text.strip():
            raise ManifestError(f"{path}:{n}", f"utterance {uid!r} has no text")
        out.append((uid.strip(), text.strip()))
    return out


def build_items(args: argparse.Namespace) -> list[Item]:
    """Every utterance x seed to make, checked before any work."""
    seeds = parse_seeds(args.seeds)
    base = dict(temperature=args.temperature, posterior_mean=args.posterior_mean, level=args.transfer_level,
                speaker=args.speaker, reference_speaker=args.reference_speaker)
    sources: list[tuple[str, str, str | None, str | None, str | None]] = []  # id, text, ref audio, ref text, ref id
    mode = args.mode
    if args.data is not None:
        utts = load_manifest(args.data)[: args.max_utts]
        mode = mode or "transfer"
        styles = load_manifest(args.style_data) if args.style_data is not None else None
        if mode == "style" and not styles:
            raise ConfigError(None, "--mode style with --data needs --style-data DATA_DIR (the references)")
        for k, u in enumerate(utts):
            if not u.text:
                raise ManifestError(args.data, f"utterance {u.id!r} has no transcript")
            if mode == "transfer":
                sources.append((u.id, u.text, u.audio, u.text, u.id))
            elif mode == "style":
                ref = styles[k % len(styles)]  # type: ignore[index]
                sources.append((u.id, u.text, ref.audio, ref.text, ref.id))
            else:
                sources.append((u.id, u.text, None, None, None))
    else:
        pairs = [("utt", args.text)] if args.text is not None else read_text_file(args.text_file)[: args.max_utts]
        ref = str(args.reference) if args.reference else None
        mode = mode or ("transfer" if ref else "text")
        if mode != "text" and ref is None:
            raise ConfigError(None, f"--mode {mode} needs --reference WAV")
        for uid, text in pairs:
            sources.append((uid, text, ref if mode != "text" else None, args.reference_text, None))
    items = []
    for uid, text, ref_audio, ref_text, ref_id in sources:
        for seed in seeds:
            req = SynthesisRequest(id=f"{uid}.s{seed}", text=text, mode=mode, reference_audio=ref_audio,
                                   reference_text=ref_text, seed=seed, **base)
            items.append(Item(req.id, uid, req, ref_id))
    return items


class Synthesizer:
    """The TTS model and the waveform generator (vocoder or Griffin-Lim), loaded once per process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model, self.info = load_tts(args.model)
        self.vocoder = None
        if args.vocoder is not None:
            from speechunits.vocoder.model import load_vocoder

            self.vocoder = load_vocoder(args.vocoder)
            mine, theirs = self.model.cfg.mel.to_dict(), self.vocoder.cfg.mel.to_dict()
            if self.vocoder.cfg.input != "mel" or mine != theirs:
                raise ConfigError(args.vocoder, f"not a mel vocoder for this TTS model: its input is "
                                                f"{self.vocoder.cfg.input} with mel settings {theirs}; the model makes {mine}")
            if self.vocoder.cfg.use_f0 or self.vocoder.cfg.num_speakers:
                raise ConfigError(args.vocoder, "the vocoder is F0- or speaker-conditioned: a TTS model gives it mels only")

    @property
    def sample_rate(self) -> int:
        return int(self.model.cfg.mel.sample_rate)

    def to(self, device: torch.device) -> None:
        self.model.to(device)
        if self.vocoder is not None:
            self.vocoder.to(device)

    def wave(self, log_mel: np.ndarray) -> np.ndarray:
        mel = torch.from_numpy(log_mel.T.copy()).to(next(self.model.parameters()).device)
        if self.vocoder is None:
            from speechunits.features.griffin_lim import griffin_lim

            return griffin_lim(mel, self.model.cfg.mel, n_iter=self.args.griffin_lim_iters).cpu().numpy()
        from speechunits.vocoder.synthesis import inputs_from_mel, synthesize_inputs

        return synthesize_inputs(self.vocoder, inputs_from_mel(mel, self.vocoder.cfg))

    def meta(self) -> dict[str, Any]:
        p = self.model.cfg.prosody
        capacity: Any = None
        if p.variational:
            capacity = [p.capacity_s, p.capacity_p] if p.hierarchical else p.capacity
        return {"model": str(self.args.model.absolute()), "model_sha256": self.info.sha256, "prosody": p.kind,
                "capacity": capacity, "vocoder": str(self.args.vocoder.absolute()) if self.args.vocoder else "griffin-lim",
                "sample_rate": self.sample_rate, "step": self.info.extra.get("step")}


def record_path(out: Path, uid: str) -> Path:
    return out / "records" / f"{uid}.json"


class RecordOutput(ItemFileOutput):
    """``DIR/records/*.json`` (one per utterance, written after its wav and attention) merged into
    ``DIR/manifest.jsonl``."""

    where = "records/"

    def path_of(self, item: Item) -> Path:
        return record_path(self.out, item.id)

    def merge(self, nj: int) -> list[str]:
        lines, done = [], []
        for it in sorted(self.items, key=lambda u: u.id):
            path = record_path(self.out, it.id)
            if path.is_file():
                lines.append(json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True))
                done.append(it.id)
        atomic_write_text(self.out / MANIFEST, "".join(line + "\n" for line in lines))
        return done


def make_one(synth: Synthesizer, item: Item, out: Path) -> float:
    """Synthesize one item; write its wav, attention and record (last). Returns audio seconds."""
    req = item.request
    res = synthesize(synth.model, synth.info, req, max_frames_per_symbol=synth.args.max_frames_per_symbol)
    wave = synth.wave(res.log_mel)
    if not np.isfinite(wave).all():
        raise ConfigError(None, "non-finite samples")
    wav_rel, att_rel = f"wavs/{item.id}.wav", f"attention/{item.id}.npy"
    write_audio(out / wav_rel, np.clip(wave, -1.0, 1.0), synth.sample_rate)
    (out / "attention").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / att_rel) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, res.attention.astype(np.float16))
    record = {"id": item.id, "source_id": item.source_id, "text": req.text, "num_symbols": res.num_symbols,
              "audio": wav_rel, "sample_rate": synth.sample_rate, "num_samples": int(len(wave)), "mode": req.mode,
              "reference_id": item.reference_id, "reference_audio": req.reference_audio, "seed": req.seed,
              "temperature": req.temperature if req.mode == "text" else None, "posterior_mean": req.posterior_mean,
              "kl": res.kl, "prosody_mean": res.prosody_mean, "decoder_steps": res.steps, "stop_fired": res.stop_fired, "attention": att_rel}
    if req.speaker:
        record["speaker"] = req.speaker
    atomic_write_json(record_path(out, item.id), record)
    return len(wave) / synth.sample_rate


def settings_of(args: argparse.Namespace, items: Sequence[Item]) -> dict[str, Any]:
    return {"verb": VERB, "model_sha256": sha256_file(args.model),
            "vocoder_sha256": sha256_file(args.vocoder) if args.vocoder else None,
            "griffin_lim_iters": None if args.vocoder else args.griffin_lim_iters,
            "requests": [asdict(i.request) for i in items],
            "max_frames_per_symbol": args.max_frames_per_symbol}


def run(args: argparse.Namespace) -> int:
    check_job_args(args)
    synth = Synthesizer(args)
    items = build_items(args)
    for item in items:  # every request the model cannot honour is an error before any work
        check_request(synth.model, item.request)
    settings = settings_of(args, items)
    out = args.out
    runner = JobRunner(VERB, items=items, out=out, nj=args.nj, output=RecordOutput(out, items), effective=settings,
                       inputs=[args.model] + ([args.vocoder] if args.vocoder else []))
    if not runner.complete():
        out.mkdir(parents=True, exist_ok=True)
        claim(out, settings)
        atomic_write_json(out / "meta.json", synth.meta())
        limit_threads(args.threads)

    def run_shard(job: int) -> None:
        synth.to(resolve_device(args.device))
        with runner.open_shard(job) as shard:
            for item in shard.todo:
                try:
                    seconds = make_one(synth, item, out)
                except SpeechUnitsError as err:
                    shard.progress(0, [f"{item.id}\t{' '.join(str(err).split())}"])
                    continue
                shard.progress(1, audio_seconds=seconds)
                shard.pause()

    return runner.run(run_shard, args, add_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"speechunits {VERB}")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
