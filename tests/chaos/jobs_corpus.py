"""Chaos jobs over corpora: tokenize (more: synth-corpus, prepare-data, extract-f0,
bootstrap-segments, frame-units). See jobs.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checks import lines_of, summary_check  # noqa: E402
from harness import ChaosJob  # noqa: E402

from synthetic_inputs import corrupt_flac, tokenize_corpus  # noqa: E402

MERGE = 0.9


# ------------------------------------------------------------------ tokenize
def _build_tokenize(d: Path) -> None:
    corpus = tokenize_corpus(d, 6, MERGE, low_rate=3)
    bad = corrupt_flac(d / "wav" / "bad.flac")
    manifest = corpus["manifest"]
    manifest.write_text(manifest.read_text() + '{"id": "spk9-bad", "audio": "%s", "speaker": "spk9"}\n' % bad)
    (d / "norm.txt").write_text(repr(corpus["norm"]))


def _tokenize_argv(root: Path) -> list[str]:
    return ["tokenize", "--model", "tiny.pt", "--data", "data.jsonl", "--out", "units", "--device", "cpu",
            "--norm-threshold", (root / "norm.txt").read_text(), "--merge-threshold", repr(MERGE),
            "--batch-seconds", "1.0", "--num-workers", "1", "--nj", "2", "--threads", "1"]


TOKENIZE = ChaosJob("tokenize", _build_tokenize, _tokenize_argv, check=summary_check("units", lines_of("units.jsonl")))

CHAOS_JOBS: list[ChaosJob] = [TOKENIZE]
