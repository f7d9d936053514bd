"""Chaos jobs on real recordings, for ``benchmarks/chaos.py --real-audio DIR`` (never in CI: the
recordings are not in the repository). ``tokenize-real`` is ``tokenize`` (as in jobs_corpus.py:
a tiny randomised model, ``--nj 2``, one cut FLAC) over the first 8 ``*.wav``/``*.WAV``/``*.flac``
files under DIR, e.g. speechocean762's ``WAVE/`` extracted from its git mirror."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checks import lines_of, summary_check  # noqa: E402
from harness import ChaosJob  # noqa: E402

from synthetic_inputs import corrupt_flac, randomised_tiny_model  # noqa: E402

MERGE = 0.9
FILES = 8


def real_tokenize_job(audio_dir: Path) -> ChaosJob:
    """``tokenize`` over real recordings under ``audio_dir`` (ValueError when it has none)."""
    found = sorted(p for p in Path(audio_dir).rglob("*") if p.suffix.lower() in (".wav", ".flac"))[:FILES]
    if not found:
        raise ValueError(f"no .wav/.flac files under {audio_dir}")

    def build(d: Path) -> None:
        import numpy as np

        from speechunits.audio import load_audio
        from speechunits.data.jsonl import write_jsonl_manifest
        from speechunits.data.utterance import Utterance
        from speechunits.encoders.checkpoints import save_encoder
        from speechunits.sylber.segmenter import Segmenter

        model = randomised_tiny_model()
        save_encoder(d / "tiny.pt", model)
        utts = [Utterance(id=f"real-{i:02d}-{p.stem}", audio=str(p.resolve())) for i, p in enumerate(found)]
        utts.append(Utterance(id="real-bad", audio=str(corrupt_flac(d / "bad.flac"))))
        write_jsonl_manifest(utts, d / "data.jsonl")
        seg = Segmenter(model, device="cpu", norm_threshold=0.0, merge_threshold=MERGE)
        wav = load_audio(found[0], 16000)
        norm = float(np.percentile(np.linalg.norm(seg(wav).hidden_states, axis=1), 30))
        (d / "norm.txt").write_text(repr(norm))

    def argv(root: Path) -> list[str]:
        return ["tokenize", "--model", "tiny.pt", "--data", "data.jsonl", "--out", "units", "--device", "cpu",
                "--norm-threshold", (root / "norm.txt").read_text(), "--merge-threshold", repr(MERGE),
                "--batch-seconds", "4.0", "--num-workers", "1", "--nj", "2", "--threads", "1"]

    return ChaosJob("tokenize-real", build, argv, check=summary_check("units", lines_of("units.jsonl")))
