"""Tone-coded synthetic 'utterances' for the judge's tests: each character is 120 ms of a
chord of sines filling its own band of the mel scale (so every mel bin carries signal for
some character), characters separated by 40 ms of near-silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speechunits.asr.fbank import FbankConfig, log_fbank, pad_features
from speechunits.asr.judge import Judge
from speechunits.asr.model import CTCJudgeModel, JudgeModelConfig, ctc_loss
from speechunits.asr.vocab import CharVocab
from speechunits.audio import write_audio
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance

SR = 16000
CHARS = "ABCD "
TEXTS = ["AB", "CAD", "BAD CAB", "DAB", "ACDC", "BA DA", "CAB", "DB CA"]


def _band_freqs(index: int, n_bands: int = len(CHARS), per_band: int = 8) -> np.ndarray:
    """``per_band`` frequencies evenly spaced in mel inside band ``index`` of 100 Hz..7.5 kHz."""
    lo, hi = 2595 * np.log10(1 + 100 / 700), 2595 * np.log10(1 + 7500 / 700)
    edges = np.linspace(lo, hi, n_bands + 1)
    mels = np.linspace(edges[index], edges[index + 1], per_band + 2)[1:-1]
    return 700 * (10 ** (mels / 2595) - 1)


def tone_wave(text: str, seed: int = 0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_tone, n_gap = int(0.12 * sr), int(0.04 * sr)
    t = np.arange(n_tone) / sr
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps
    parts = [np.zeros(n_gap)]
    for ch in text:
        freqs = _band_freqs(CHARS.index(ch))
        phases = rng.uniform(0, 2 * np.pi, freqs.size)
        chord = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).sum(axis=0) / freqs.size
        parts += [0.5 * env * chord, np.zeros(n_gap)]
    wave = np.concatenate(parts).astype(np.float32)
    return wave + 1e-3 * rng.standard_normal(wave.size).astype(np.float32)


def write_tone_corpus(root: Path, texts: list[str] = TEXTS, sr: int = SR) -> Path:
    """``root/manifest.jsonl`` + ``root/wav/*.wav`` (transcripts alternately lower case);
    returns ``root``."""
    utts = []
    for i, text in enumerate(texts):
        path = root / "wav" / f"utt{i:02d}.wav"
        write_audio(path, tone_wave(text, seed=i, sr=sr), sr)
        utts.append(Utterance(id=f"utt{i:02d}", audio=str(path), text=text.lower() if i % 2 else text))
    write_jsonl_manifest(utts, root / "manifest.jsonl")
    return root


TINY = {"subsampling": 2, "conv_channels": 8, "hidden": 64, "num_layers": 1, "dropout": 0.0}


def tone_vocab() -> CharVocab:
    return CharVocab.from_texts(list(CHARS))


def train_tone_judge(encoder: str = "blstm", steps: int = 250) -> Judge:
    """A tiny judge trained (full batch, Adam) on the tone utterances of ``TEXTS``."""
    torch.manual_seed(0)
    vocab, fbank = tone_vocab(), FbankConfig()
    cfg = JudgeModelConfig.from_dict({**TINY, "encoder": encoder, "vocab_size": len(vocab),
                                      **({"hidden": 32, "num_layers": 2, "conformer_heads": 2} if encoder == "conformer" else {})})
    model = CTCJudgeModel(cfg)
    feats, lengths = pad_features([log_fbank(tone_wave(t, seed=i), SR, fbank) for i, t in enumerate(TEXTS)])
    labels = [vocab.encode(t) for t in TEXTS]
    targets = torch.tensor([k for seq in labels for k in seq])
    target_lengths = torch.tensor([len(seq) for seq in labels])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        log_probs, out_lengths = model(feats, lengths)
        loss = ctc_loss(log_probs, out_lengths, targets, target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Judge(model, vocab, fbank)
