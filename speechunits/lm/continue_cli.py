"""``speechunits lm-continue``: spoken continuation, prompt units in, sampled units out, as a unit set.

Example::

    speechunits lm-continue --model exp/lm/sylber/model.pt --units exp/units/test --out exp/cont \\
        --num-utts 10 --prompt-seconds 1.5 --max-new-tokens 15 --temperature 0.8 --top-p 0.9
    speechunits synthesize --model vocoder_syllables/vocoder.pt --units exp/cont/units \\
        --out exp/cont/synth --durations predicted

For each of the first ``--num-utts`` utterances (in id order) the prompt is every token that ends
within the first ``--prompt-seconds`` of audio, turned into LM tokens exactly as ``lm-pack`` did
for the model's training data (same dedup, same BPE model: the model file records both and the
unit set's meta hash must match). The LM samples a continuation, which is mapped back to unit
ids. The output unit set ``OUT/units`` holds two entries per utterance, ``<id>.prompt`` (the
prompt tokens with their own spans and gaps) and ``<id>.continued`` (the prompt, then the new
tokens). New tokens get contiguous spans of the prompt's mean token length (one frame each for
frame-level LM tokens): they are placeholders for the vocoder's duration predictor, which is why
continuations are synthesized with ``--durations predicted``. ``OUT/prompts/<id>.wav`` is the
original audio of the prompt span, so a listener hears the real prompt next to both syntheses,
and ``OUT/continuations.jsonl`` lists prompt and sampled unit ids with the sampling settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from speechunits.audio import load_audio, write_audio
from speechunits.device import resolve_device
from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.lm.bpe import UnitBPE
from speechunits.lm.model_io import load_lm
from speechunits.lm.sampling import sample
from speechunits.lm.tokens import record_tokens, unit_set_hash
from speechunits.units import UnitRecord, read_meta, read_units, write_unit_set

VERB = "lm-continue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, prompts, output and sampling options."""
    parser.add_argument("--model", required=True, type=Path, help="LM model.pt written by train-lm")
    parser.add_argument("--units", required=True, type=Path, help="quantized unit set of the prompts (same tokenizer)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (units/, prompts/, continuations.jsonl)")
    parser.add_argument("--num-utts", type=int, default=10, help="prompts: the first N utterances by id (default 10)")
    parser.add_argument("--prompt-seconds", type=float, default=1.5, help="prompt length in seconds (default 1.5)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="LM tokens to sample at most (default 20)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus: smallest set with this mass (1 = all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _check(args: argparse.Namespace) -> None:
    problems = []
    if args.num_utts < 1:
        problems.append(f"--num-utts must be >= 1, got {args.num_utts}")
    if not args.prompt_seconds > 0:
        problems.append(f"--prompt-seconds must be > 0, got {args.prompt_seconds}")
    if args.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0 or args.top_k < 0 or not 0 < args.top_p <= 1:
        problems.append("need --temperature >= 0, --top-k >= 0 and 0 < --top-p <= 1")
    if problems:
        raise ConfigError(None, "; ".join(problems))


def prompt_record(rec: UnitRecord, max_frame: int) -> UnitRecord:
    """The tokens of ``rec`` that end by frame ``max_frame``."""
    keep = sum(1 for e in rec.ends if e <= max_frame)
    return UnitRecord(id=rec.id, audio=rec.audio, num_samples=rec.num_samples, sample_rate=rec.sample_rate,
                      starts=rec.starts[:keep], ends=rec.ends[:keep], units=(rec.units or [])[:keep],
                      speaker=rec.speaker)


def continued_record(prompt: UnitRecord, new_units: list[int], frames_per_token: int, hop: int,
                     meta_sample_rate: int) -> UnitRecord:
    """The prompt followed by ``new_units`` on contiguous placeholder spans."""
    start = prompt.ends[-1] if prompt.ends else 0
    starts = [start + i * frames_per_token for i in range(len(new_units))]
    ends = [s + frames_per_token for s in starts]
    last = ends[-1] if ends else start
    return UnitRecord(id=prompt.id, audio=prompt.audio, num_samples=last * hop * prompt.sample_rate // meta_sample_rate,
                      sample_rate=prompt.sample_rate, starts=prompt.starts + starts, ends=prompt.ends + ends,
                      units=list(prompt.units or []) + new_units, speaker=prompt.speaker)


def run(args: argparse.Namespace) -> int:
    """Sample continuations and write the unit set, the prompt audio and the listing."""
    _check(args)
    meta = read_meta(args.units)
    model, info = load_lm(args.model)
    if info.producer.get("unit_set_hash") != unit_set_hash(meta):
        raise ConfigError(args.units, f"its tokens are not those of the model {args.model} (another unit set meta hash: "
                                      "tokenizer, codebook or frame rate differ); tokenize the prompts as its training data")
    dedup = bool(info.producer.get("dedup"))
    bpe = UnitBPE(info.producer["bpe"]["model"]) if info.producer.get("bpe") else None
    device = resolve_device(args.device)
    model.to(device).eval()
    max_frame = int(round(args.prompt_seconds * meta.frame_rate_hz))
    frame_level = meta.kind == "frame" and not dedup  # one LM token per frame
    generator = torch.Generator(device="cpu").manual_seed(args.seed)

    prompts, lm_prompts = [], []
    for rec in read_units(args.units):
        if len(prompts) == args.num_utts:
            break
        p = prompt_record(rec, max_frame)
        if not p.starts:
            print(f"{VERB}: {rec.id}: no token ends within {args.prompt_seconds} s; skipped", file=sys.stderr)
            continue
        tokens = record_tokens(p, dedup=dedup, kind=meta.kind)
        prompts.append(p)
        lm_prompts.append(bpe.encode(tokens) if bpe else tokens)
    if not prompts:
        raise ConfigError(args.units, f"no utterance has a token within the first {args.prompt_seconds} s")
    with torch.no_grad():
        sampled = sample(model, lm_prompts, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                         top_p=args.top_p, generator=generator)

    records, listing = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    for p, new in zip(prompts, sampled):
        new_units = [int(u) for u in (bpe.decode(new) if bpe else new)]
        spans = np.asarray(p.ends) - np.asarray(p.starts)
        frames = 1 if frame_level else max(1, int(round(float(spans.mean()))))
        records.append(dataclasses.replace(p, id=f"{p.id}.prompt"))
        records.append(dataclasses.replace(continued_record(p, new_units, frames, meta.hop, meta.sample_rate),
                                           id=f"{p.id}.continued"))
        seconds = min(p.ends[-1] * meta.hop / meta.sample_rate, p.num_samples / p.sample_rate)
        wav = load_audio(meta.resolve_audio(p, args.units), target_sr=meta.sample_rate, duration_s=seconds)
        write_audio(args.out / "prompts" / f"{p.id}.wav", wav, meta.sample_rate)
        listing.append({"id": p.id, "prompt_units": list(p.units or []), "new_units": new_units,
                        "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed})
    producer = {**meta.producer, "continuation": {"model": str(args.model), "prompt_seconds": args.prompt_seconds,
                                                   "placeholder_spans": True}}
    write_unit_set(args.out / "units", sorted(records, key=lambda r: r.id), kind=meta.kind, sample_rate=meta.sample_rate,
                   hop=meta.hop, producer=producer, vocab_size=meta.vocab_size, special_ids=meta.special_ids,
                   audio_root=str(meta.resolved_audio_root(args.units)), source_manifest=meta.source_manifest)
    atomic_write_text(args.out / "continuations.jsonl", "".join(json.dumps(x) + "\n" for x in listing))
    print(f"{VERB}: {len(prompts)} continuations -> {args.out / 'units'} (synthesize it with --durations predicted)")
    return 0
