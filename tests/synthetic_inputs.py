"""Inputs shared by the encoder, Segmenter and corpus-job tests: a tiny model, speech-like tone bursts,
a small tokenize corpus, a damaged FLAC, and a job killed mid-way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speechunits.encoders.model import EncoderConfig, SpeechEncoder

SR = 16000


def randomised_tiny_model() -> SpeechEncoder:
    """A tiny model whose layer norms are randomised so frame norms and directions vary."""
    torch.manual_seed(0)
    m = SpeechEncoder(EncoderConfig.tiny())
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "layer_norm" in name:
                w = name.endswith("weight")
                p.copy_(torch.randn_like(p) * (0.8 if w else 0.5) + (1.0 if w else 0.0))
    return m.eval()


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Tone bursts of different pitches separated by near-silence (float32 at 16 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    wav = 0.001 * rng.standard_normal(n)
    pos = int(0.1 * SR)
    while pos < n - 1600:
        dur = int(rng.uniform(0.08, 0.25) * SR)
        t = np.arange(min(dur, n - pos)) / SR
        f0 = rng.uniform(100, 300)
        wav[pos: pos + len(t)] += 0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(len(t)) + 0.05 * rng.standard_normal(len(t))
        pos += len(t) + int(rng.uniform(0.0, 0.15) * SR)
    return wav.astype(np.float32)


def tokenize_corpus(root: Path, num_utts: int, merge_threshold: float, low_rate: int | None = None) -> dict:
    """A corpus for ``speechunits tokenize`` under ``root``: the tiny randomised checkpoint
    (``tiny.pt``), ``num_utts`` speech-like wavs of 0.6 s + 0.2 s per index (utterance
    ``low_rate`` at 8 kHz), a JSONL manifest and a norm threshold at the 30th percentile of the
    model's frame norms. Keys: root, ckpt, manifest, utts, norm, model."""
    import soundfile as sf

    from speechunits.data.jsonl import write_jsonl_manifest
    from speechunits.data.utterance import Utterance
    from speechunits.encoders.checkpoints import save_encoder
    from speechunits.sylber.segmenter import Segmenter

    model = randomised_tiny_model()
    ckpt = root / "tiny.pt"
    save_encoder(ckpt, model)
    utts = []
    for i in range(num_utts):
        sr = 8000 if i == low_rate else SR
        wav = speechlike(0.6 + 0.2 * i, i)
        if sr != SR:
            wav = wav[::2]
        path = root / "wav" / f"u{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav, sr)
        utts.append(Utterance(id=f"spk{i % 2}-u{i:02d}", audio=str(path), text=f"text {i}", speaker=f"spk{i % 2}"))
    manifest = root / "data.jsonl"
    write_jsonl_manifest(utts, manifest)
    seg = Segmenter(model, device="cpu", norm_threshold=0.0, merge_threshold=merge_threshold)
    norm = float(np.percentile(np.linalg.norm(seg(speechlike(2.0, 0)).hidden_states, axis=1), 30))
    return {"root": root, "ckpt": ckpt, "manifest": manifest, "utts": utts, "norm": norm, "model": model}


def corrupt_flac(path, seconds: float = 1.0, size: int = 86):
    """A FLAC file as damaged ones are found in real corpora: STREAMINFO's 36-bit total-samples
    field zeroed ("unknown", which libsndfile reports as 2**63 - 1 frames, 576460752303423.5 s
    at 16 kHz) and the file cut to ``size`` bytes. Returns ``path``."""
    import soundfile as sf

    sf.write(path, speechlike(seconds, 99), SR, format="FLAC")
    data = bytearray(open(path, "rb").read())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    packed = int.from_bytes(data[18:26], "big")  # sample rate (20 bits), channels, bits, total samples (36 bits)
    data[18:26] = (packed & ~((1 << 36) - 1)).to_bytes(8, "big")
    with open(path, "wb") as f:
        f.write(bytes(data[:size]))
    return path


def kill_mid_way(cmd: list, partial, cwd, timeout: float = 120.0) -> list:
    """Run a job command with the runner's test delay (it sleeps after each written batch),
    SIGKILL it once ``partial`` (its ``units.J.partial.jsonl``) holds a line; returns the ids there."""
    import json
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    from speechunits.jobs import DELAY_ENV

    partial = Path(partial)
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, DELAY_ENV: "30"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not (partial.is_file() and partial.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, f"job exited early with {proc.returncode}"
            assert time.monotonic() < deadline, f"{partial} got no line in {timeout} s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return [json.loads(line)["id"] for line in partial.read_text().splitlines()]


def run_killed_at(cmd: list, point: str, cwd, timeout: float = 300.0) -> int:
    """Run a job command in a new session with ``SPEECHUNITS_KILL_AT=point`` (``KEY#K``, see
    :mod:`speechunits.killpoints`): it SIGKILLs its process group there. Returns the exit code
    (-9 when the point was reached)."""
    import os
    import subprocess

    from speechunits.killpoints import KILL_AT_ENV

    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, KILL_AT_ENV: point}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True, timeout=timeout)
    return proc.returncode
