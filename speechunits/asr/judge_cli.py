"""``speechunits judge``: transcribe a data dir with a trained judge and score it.

    speechunits judge --model exp/judge/judge.pt --data DATA_DIR [--beam N] --out hyp.jsonl

Prints one JSON line ``{"cer", "wer", "num_utts", "num_bad", "beam", ...}`` (corpus-level,
percent, jiwer) and writes ``hyp.jsonl``: ``{"id", "ref", "hyp", "cer", "wer"}`` per
utterance, in the data's order. Utterances whose audio cannot be read are skipped, listed on
stderr and in ``<out>.bad_utts.txt`` (``<id> <reason>``); a missing transcript is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from speechunits.asr.data import manifest_source, read_transcribed
from speechunits.data.waves import load_waves, report_bad
from speechunits.asr.judge import load_judge
from speechunits.asr.vocab import normalize_text
from speechunits.errors import ConfigError
from speechunits.eval.error_rates import error_rates
from speechunits.io_utils import atomic_path, atomic_write_json, atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="judge.pt written by train-judge")
    parser.add_argument("--data", required=True, type=Path, help="data dir (manifest.jsonl with id/audio/text) or .jsonl manifest")
    parser.add_argument("--out", required=True, type=Path, help="per-utterance hypotheses (JSONL)")
    parser.add_argument("--beam", type=int, default=1, help="1: greedy (default); N > 1: CTC prefix beam search of width N")
    parser.add_argument("--scores", type=Path, help="also write the summary JSON here")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--batch-utts", type=int, default=32, help="utterances read and decoded per chunk (default 32)")


def run(args: argparse.Namespace) -> int:
    from speechunits.device import resolve_device

    if args.beam < 1:
        raise ConfigError(None, f"--beam must be >= 1, got {args.beam}")
    judge = load_judge(args.model, device=resolve_device(args.device))
    utts = read_transcribed(args.data)
    refs: dict[str, str] = {}
    hyps: dict[str, str] = {}
    bad: dict[str, str] = {}
    step = max(1, int(args.batch_utts))
    with tqdm(total=len(utts), desc="judge", unit="utt", file=sys.stderr) as bar:
        for start in range(0, len(utts), step):
            chunk = utts[start : start + step]
            waves, chunk_bad = load_waves(chunk, judge.sample_rate, progress=False)
            bad.update(chunk_bad)
            ok = [u for u in chunk if u.id in waves]
            texts = judge.transcribe([waves[u.id] for u in ok], judge.sample_rate, beam=args.beam)
            for u, hyp in zip(ok, texts):
                refs[u.id], hyps[u.id] = normalize_text(u.text or ""), hyp
            bar.update(len(chunk))
    report_bad(bad, "judge")
    if not hyps:
        raise ConfigError(manifest_source(args.data), "no utterance could be decoded (all audio unusable)")
    with atomic_path(args.out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for utt_id, hyp in hyps.items():
                per = error_rates([refs[utt_id]], [hyp])
                f.write(json.dumps({"id": utt_id, "ref": refs[utt_id], "hyp": hyp, **per}, ensure_ascii=False) + "\n")
    bad_path = args.out.with_name(args.out.name + ".bad_utts.txt")
    if bad:
        atomic_write_text(bad_path, "".join(f"{k} {v}\n" for k, v in bad.items()))
    elif bad_path.exists():
        bad_path.unlink()
    scores = {
        **error_rates(list(refs.values()), list(hyps.values())),
        "num_utts": len(hyps), "num_bad": len(bad), "beam": args.beam,
        "model": str(args.model), "data": str(args.data),
    }
    if args.scores:
        atomic_write_json(args.scores, scores)
    print(json.dumps(scores, sort_keys=True))
    print(f"judge: CER {scores['cer']:.2f}%  WER {scores['wer']:.2f}% over {len(hyps)} utterances -> {args.out}", file=sys.stderr)
    return 0
