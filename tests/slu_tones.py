"""Tone "utterances" for the class-incremental SLU tests: four FSC-shaped intents, each a
noisy sine of its own pitch, written as Kaldi data dirs (train/valid/test) with a tiny
2-task config (``conf.yaml``). Shared by test_slu_protocol.py and test_slu_ddp.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechunits.audio import write_audio
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance

# label -> (transcript, tone Hz, train count); different counts fix the frequency order
CLASSES = {
    "activate_lights_none": ("lights on", 300.0, 6),
    "change language_German_none": ("speak german", 700.0, 5),
    "deactivate_music_none": ("music off", 1500.0, 4),
    "bring_shoes_none": ("bring my shoes", 3000.0, 3),
}

CONFIG = """
corpus: fsc
benchmark: frequency
num_tasks: 2
seed: 0
vocab_size: 40
epochs_per_task: 2
batch_size: 6
model:
  encoder: {type: mel_conformer, n_mels: 40, d_model: 32, num_layers: 1, num_heads: 4, ffn_dim: 64, kernel_size: 7, dropout: 0.0}
  d_model: 32
  num_layers: 1
  num_heads: 4
  ffn_dim: 64
  dropout: 0.0
  proj_dim: 16
  proj_hidden: 32
memory: {budget: 4, selection: herding}
decode: {beam_size: 1, max_len: 8, batch_size: 8}
train: {lr: 3.0e-3, precision: fp32, progress: false, tensorboard: false, log_every: 1, save_every: 1000, keep_last: 1}
"""


def write_split(root, name: str, counts: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    utts = []
    for label, (text, freq, _) in CLASSES.items():
        action, obj, loc = label.split("_")
        for k in range(counts[label]):
            n = int(rng.integers(3200, 4800))
            wav = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000) + 0.01 * rng.standard_normal(n)
            path = root / "wavs" / name / f"{action.replace(' ', '')}-{obj}-{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_audio(path, wav.astype(np.float32), 16000)
            utts.append(Utterance(f"{name}-{path.stem}", str(path), text, "spk1",
                                  extra={"action": action, "object": obj, "location": loc, "intent": label}))
    write_kaldi_dir(utts, root / name)


def write_tone_slu_data(root: Path) -> Path:
    """train (6/5/4/3 per class), valid (1) and test (2) data dirs and ``conf.yaml`` under ``root``."""
    write_split(root, "train", {k: v[2] for k, v in CLASSES.items()}, 0)
    write_split(root, "valid", {k: 1 for k in CLASSES}, 1)
    write_split(root, "test", {k: 2 for k in CLASSES}, 2)
    (root / "conf.yaml").write_text(CONFIG)
    return root
