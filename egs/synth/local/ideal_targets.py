#!/usr/bin/env python3
"""How well could a *perfect* Sylber stage-1 student segment, for a given log-mel teacher?

For each dev utterance the teacher's features are averaged within the bootstrap segments (the
stage-1 targets), and the greedy segmentation is run on those ideal targets. The script prints
the cosine between adjacent segment means (what the greedy merge compares) and the boundary
scores of the ideal targets against the reference syllables, for the log-mel teacher
standardised over all frames without deltas and over the speech frames with deltas.

    .venv/bin/python egs/synth/local/ideal_targets.py --data egs/synth/data/dev-clean \\
        --segments egs/synth/exp/sylber/bootstrap/dev-clean --alignments egs/synth/data/corpora/alignments
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from speechunits.audio import load_audio
from speechunits.data.alignments import textgrid_syllable_spans
from speechunits.data.jsonl import load_manifest
from speechunits.eval.boundaries import evaluate_boundaries, interval_boundaries, segment_boundaries
from speechunits.io_utils import index_files
from speechunits.sylber.feature_teacher import LogMelTeacher
from speechunits.sylber.losses import segment_average_targets
from speechunits.sylber.segment import greedy_segment
from speechunits.sylber.train_task import load_segments, segment_mask

CONV = [[64, 10, 5], [64, 3, 2], [64, 3, 2], [64, 3, 2], [64, 3, 2], [64, 2, 2], [64, 2, 2]]
VARIANTS = {"all frames, no deltas": ("utterance", False), "speech frames + deltas": ("speech", True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dev data dir")
    parser.add_argument("--segments", type=Path, required=True, help="bootstrap unit set of that data dir")
    parser.add_argument("--alignments", type=Path, required=True, help="reference TextGrids")
    parser.add_argument("--merge-thresholds", default="0.5,0.7,0.8,0.9")
    parser.add_argument("--shift", type=float, default=-0.01, help="seconds added to predicted boundaries")
    args = parser.parse_args()
    torch.set_num_threads(2)
    utts = load_manifest(args.data, require_text=False)
    segments = load_segments(args.segments, 50.0)
    grids = index_files(args.alignments, ".TextGrid")
    refs = {u.id: interval_boundaries(textgrid_syllable_spans(grids[u.id])[1]) for u in utts}
    waves = {u.id: torch.as_tensor(load_audio(u.audio))[None] for u in utts}
    merges = [float(m) for m in args.merge_thresholds.split(",")]
    boot = evaluate_boundaries({u: segment_boundaries(segments[u], 50.0) for u in refs}, refs, 0.05, args.shift)
    print(f"bootstrap segments themselves: F1 {100 * boot.f1:.1f}")
    print("| teacher statistics | adjacent cos median | q90 | " + " | ".join(f"F1 @ merge {m}" for m in merges) + " |")
    print("|---|---:|---:|" + "---:|" * len(merges))
    for name, (standardise, deltas) in VARIANTS.items():
        teacher = LogMelTeacher(256, CONV, deltas=deltas)
        targets, cosines = {}, []
        for utt, wav in waves.items():
            seg = segments[utt]
            _, frames = teacher(wav)
            speech = segment_mask([seg], int(frames[0])) if standardise == "speech" else None
            feats, _ = teacher(wav, speech_mask=speech)
            target = segment_average_targets(feats, [seg])[0].numpy()
            targets[utt] = target
            for (_, end), (start, _) in zip(seg[:-1], seg[1:]):
                if end == start:  # adjacent segments: the means the merge compares
                    a, b = target[end - 1], target[start]
                    cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
        norms = np.concatenate([np.linalg.norm(t, axis=1) for t in targets.values()])
        norm_threshold = 0.5 * float(np.percentile(norms[norms > 0], 1))  # below every segment's norm
        f1s = []
        for merge in merges:
            pred = {u: segment_boundaries(greedy_segment(t, norm_threshold, merge), 50.0) for u, t in targets.items()}
            f1s.append(100 * evaluate_boundaries(pred, refs, 0.05, args.shift).f1)
        q50, q90 = np.percentile(cosines, [50, 90])
        print(f"| {name} | {q50:.2f} | {q90:.2f} | " + " | ".join(f"{f:.1f}" for f in f1s) + " |")


if __name__ == "__main__":
    main()
