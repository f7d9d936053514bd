"""A tiny TTS corpus for the tests: each letter of a sentence is a tone of its own pitch, so
text and audio line up the way speech does; tiny model options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechunits.audio import write_audio

SR = 16000
MEL = {"sample_rate": SR, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 24, "f_max": 8000.0}
SENTENCES = ["a cab", "bad dab", "ace bed", "fade cafe", "bead face", "dace fed", "deaf babe", "cede add"]


def tiny_options(kind: str = "VT", *extra: str) -> list[str]:
    """Trainer + task overrides of a tiny Capacitron on :func:`make_corpus` data."""
    mel = [f"task.mel.{k}={v}" for k, v in MEL.items()]
    model = {"embed_dim": 16, "encoder_dim": 16, "encoder_convs": 1, "attention_dim": 8, "attention_rnn_dim": 24,
             "prenet_dim": 16, "decoder_dim": 24, "reduction": 2, "postnet_dim": 16, "postnet_convs": 2,
             "location_filters": 4, "location_kernel": 7, "dca_filters": 4, "dca_kernel": 7, "speaker_dim": 4}
    prosody = {"kind": kind, "latent_dim": 4, "ref_rnn_dim": 8, "text_summary_dim": 8, "posterior_hidden": 8,
               "ref_channels": "[4,4,4,4,4,4]"}
    return ["max_steps=4", "lr=0.003", "log_every=1", "progress=false", "tensorboard=false", "weight_decay=0.0",
            "task.frontend.kind=characters", "task.batch_size=4", "task.valid_utts=2", *mel,
            *[f"task.model.{k}={v}" for k, v in model.items()], *[f"task.prosody.{k}={v}" for k, v in prosody.items()],
            *extra]


def tone_wave(text: str, rng: np.random.Generator, stretch: float = 1.0, shift: float = 1.0) -> np.ndarray:
    """One 50 ms tone per character (pitch from the letter, silence for spaces)."""
    pieces = []
    for ch in text:
        n = int(0.05 * stretch * SR)
        t = np.arange(n) / SR
        f = 0.0 if ch == " " else shift * (150.0 + 20.0 * (ord(ch) - ord("a")))
        pieces.append(0.3 * np.sin(2 * np.pi * f * t))
    wave = np.concatenate([np.zeros(800), *pieces, np.zeros(800)]) + 0.001 * rng.standard_normal(1600 + sum(map(len, pieces)))
    return wave.astype(np.float32)


def make_corpus(root: Path, *, missing_text: bool = False, corrupt: bool = False) -> Path:
    """``root/data/manifest.jsonl`` over ``root/wav/*.wav`` (two speakers); returns the data dir."""
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(SENTENCES):
        uid = f"utt{i:02d}"
        path = root / "wav" / f"{uid}.wav"
        write_audio(path, tone_wave(text, rng, stretch=1.0 + 0.1 * (i % 3), shift=1.0 + 0.05 * (i % 2)), SR)
        rec = {"id": uid, "audio": str(path), "text": text, "speaker": f"s{i % 2}"}
        lines.append(rec)
    if missing_text:
        path = root / "wav" / "notext.wav"
        write_audio(path, tone_wave("abc", rng), SR)
        lines.append({"id": "notext", "audio": str(path), "speaker": "s0"})
    if corrupt:
        path = root / "wav" / "corrupt.wav"
        path.write_bytes(b"RIFF....WAVEfmt garbage")
        lines.append({"id": "corrupt", "audio": str(path), "text": "bad", "speaker": "s1"})
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return data
