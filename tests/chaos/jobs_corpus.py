"""Chaos jobs over corpora: tokenize, synth-corpus, prepare-data, extract-f0, bootstrap-segments,
frame-units. See jobs.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checks import lines_of, summary_check  # noqa: E402
from harness import ChaosJob  # noqa: E402

from synthetic_inputs import SR, corrupt_flac, randomised_tiny_model, speechlike, tokenize_corpus  # noqa: E402

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


# ------------------------------------------------------------------ synth-corpus
def _build_nothing(d: Path) -> None:
    """synth-corpus makes its own audio (Festival / espeak-ng): no inputs."""


def _synth_argv(root: Path) -> list[str]:
    return ["synth-corpus", "--layout", "librispeech", "--out", "corpus", "--splits", "dev-clean:4",
            "--voices", "kal,slt", "--seed", "0", "--nj", "2", "--threads", "1"]


SYNTH_CORPUS = ChaosJob("synth-corpus", _build_nothing, _synth_argv,
                        check=summary_check("corpus/.synth/librispeech",
                                            lambda out: len(list((out.parents[1] / "LibriSpeech").rglob("*.flac")))),
                        markers=("festival",))


# ------------------------------------------------------------------ prepare-data
def _build_librispeech(d: Path) -> None:
    """A LibriSpeech layout of 2 speakers x 3 utterances (tone bursts written with soundfile)."""
    import soundfile as sf

    for s, spk in enumerate(("19", "26")):
        chapter = d / "LibriSpeech" / "dev-clean" / spk / "198"
        chapter.mkdir(parents=True)
        lines = []
        for u in range(3):
            uid = f"{spk}-198-{u:04d}"
            sf.write(chapter / f"{uid}.flac", speechlike(0.5 + 0.1 * u, 10 * s + u), SR, format="FLAC")
            lines.append(f"{uid} WORDS OF UTTERANCE {u}\n")
        (chapter / f"{spk}-198.trans.txt").write_text("".join(lines))


def _prepare_argv(root: Path) -> list[str]:
    return ["prepare-data", "--corpus", "librispeech", "--corpus-dir", "LibriSpeech", "--split", "dev-clean",
            "--out", "data", "--with-durations"]


PREPARE_DATA = ChaosJob("prepare-data", _build_librispeech, _prepare_argv)


# ------------------------------------------------------------------ extract-f0, bootstrap-segments, frame-units
def _build_waves(d: Path, num_utts: int = 6, model: bool = False) -> None:
    """``num_utts`` speech-like wavs of 0.6 s + 0.2 s per index, a corrupt FLAC, a JSONL manifest
    ``data.jsonl`` (the bad one last), and with ``model`` the tiny randomised encoder ``tiny.pt``."""
    import soundfile as sf

    from speechunits.data.jsonl import write_jsonl_manifest
    from speechunits.data.utterance import Utterance

    (d / "wav").mkdir()
    utts = []
    for i in range(num_utts):
        path = d / "wav" / f"u{i:02d}.wav"
        sf.write(path, speechlike(0.6 + 0.2 * i, i), SR)
        utts.append(Utterance(id=f"spk{i % 2}-u{i:02d}", audio=str(path), speaker=f"spk{i % 2}"))
    bad = corrupt_flac(d / "wav" / "bad.flac")
    utts.append(Utterance(id="spk9-bad", audio=str(bad), speaker="spk9"))
    write_jsonl_manifest(utts, d / "data.jsonl")
    if model:
        from speechunits.encoders.checkpoints import save_encoder

        save_encoder(d / "tiny.pt", randomised_tiny_model())


def _f0_argv(root: Path) -> list[str]:
    return ["extract-f0", "--data", "data.jsonl", "--out", "f0", "--quiet", "--nj", "2", "--threads", "1"]


EXTRACT_F0 = ChaosJob("extract-f0", _build_waves, _f0_argv,
                      check=summary_check("f0", lambda out: len(list((out / "f0").glob("*.npy")))))


def _bootstrap_argv(root: Path) -> list[str]:
    return ["bootstrap-segments", "--data", "data.jsonl", "--out", "units", "--nj", "2", "--threads", "1"]


BOOTSTRAP_SEGMENTS = ChaosJob("bootstrap-segments", _build_waves, _bootstrap_argv,
                              check=summary_check("units", lines_of("units.jsonl")))


def _frame_units_argv(root: Path) -> list[str]:
    return ["frame-units", "--model", "tiny.pt", "--layer", "1", "--data", "data.jsonl", "--out", "units",
            "--k", "4", "--iters", "10", "--seed", "0", "--device", "cpu", "--batch-seconds", "2.0",
            "--num-workers", "1", "--quiet", "--nj", "2", "--threads", "1"]


FRAME_UNITS = ChaosJob("frame-units", lambda d: _build_waves(d, model=True), _frame_units_argv,
                       check=summary_check("units", lines_of("units.jsonl")))

CHAOS_JOBS: list[ChaosJob] = [TOKENIZE, SYNTH_CORPUS, PREPARE_DATA, EXTRACT_F0, BOOTSTRAP_SEGMENTS, FRAME_UNITS]
