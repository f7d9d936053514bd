#!/usr/bin/env python3
"""Build a small real labelled dev set from aligned recordings (audio + MFA-style TextGrid).

Each recording is cut at pauses of its word tier into utterances of about --min-seconds or
more; every utterance gets its audio (the file's own rate and channels, 16-bit PCM), a
TextGrid with the word and phone tiers shifted to the cut, and an entry in a Kaldi data dir
(speaker = recording name). Used for model selection of the Sylber recipes on real speech
(scored with `speechunits eval-boundaries --syllabify-phones`). The audio of public test
recordings is not ours to redistribute: write the set to a temporary folder, never commit it.

    python utils/aligned_dev_set.py --out /tmp/realdev \\
        --pair MFA/tests/data/wav/cold_corpus.wav:MFA/tests/data/textgrid/cold_corpus.TextGrid ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from speechunits.data.alignments import Interval, is_silence, read_textgrid, write_textgrid
from speechunits.data.jsonl import MANIFEST_FILE, write_jsonl_manifest
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.provenance import write_provenance


def pauses(words: list[Interval], min_pause: float) -> list[float]:
    """Midpoints of the silent word-tier intervals at least ``min_pause`` long."""
    return [(w.start + w.end) / 2 for w in words if is_silence(w.label) and w.end - w.start >= min_pause]


def cut_points(words: list[Interval], duration: float, min_seconds: float, min_pause: float) -> list[float]:
    """Cut times: the first pause after at least ``min_seconds`` of the current utterance."""
    cuts = [0.0]
    for t in pauses(words, min_pause):
        if t - cuts[-1] >= min_seconds and duration - t >= min_seconds / 2:
            cuts.append(t)
    return cuts + [duration]


def clip(tier: list[Interval], start: float, end: float) -> list[Interval]:
    """The intervals inside [start, end), shifted to start at 0 (labels of cut silences kept)."""
    out = []
    for iv in tier:
        a, b = max(iv.start, start), min(iv.end, end)
        if b - a > 1e-6:
            out.append(Interval(round(a - start, 6), round(b - start, 6), iv.label))
    return out


def find_tier(tiers: dict[str, list[Interval]], kind: str, path: Path) -> str:
    names = [n for n in tiers if kind in n.lower()]
    if not names:
        raise SystemExit(f"{path}: no {kind} tier (tiers: {sorted(tiers)})")
    return names[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", action="append", required=True, help="AUDIO:TEXTGRID of one recording")
    parser.add_argument("--out", required=True, type=Path, help="output: audio/, alignments/, data/")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="shortest utterance (default 3)")
    parser.add_argument("--min-pause", type=float, default=0.15, help="shortest pause to cut at (default 0.15 s)")
    args = parser.parse_args()
    utts = []
    total = 0.0
    for pair in args.pair:
        audio_path, _, tg_path = pair.partition(":")
        audio, tg = Path(audio_path), Path(tg_path)
        wav, rate = sf.read(audio, dtype="float32", always_2d=True)
        tiers = read_textgrid(tg)
        words, phones = tiers[find_tier(tiers, "word", tg)], tiers[find_tier(tiers, "phone", tg)]
        cuts = cut_points(words, len(wav) / rate, args.min_seconds, args.min_pause)
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            utt = f"{audio.stem}-{i:03d}"
            out_wav = args.out / "audio" / f"{utt}.wav"
            out_wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(out_wav, wav[int(a * rate): int(b * rate)], rate, subtype="PCM_16")
            w, p = clip(words, a, b), clip(phones, a, b)
            write_textgrid(args.out / "alignments" / f"{utt}.TextGrid", {"words": w, "phones": p}, xmax=b - a)
            text = " ".join(x.label for x in w if not is_silence(x.label) and x.label.strip())
            utts.append(Utterance(id=utt, audio=str(out_wav.resolve()), text=text, speaker=audio.stem))
            total += b - a
    write_kaldi_dir(utts, args.out / "data")
    write_jsonl_manifest(utts, args.out / "data" / MANIFEST_FILE)
    config = {"pairs": args.pair, "min_seconds": args.min_seconds, "min_pause": args.min_pause}
    write_provenance(args.out / "data", config, [p.partition(":")[2] for p in args.pair])  # last: the dir is complete
    print(f"aligned_dev_set: {len(utts)} utterances, {total:.1f} s, from {len(args.pair)} recordings -> {args.out}")


if __name__ == "__main__":
    main()
