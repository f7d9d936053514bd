"""Stacked log-mel spectrograms of audio files on a shared time axis: the picture of a synthesis
(original against resynthesis, prompt against continuation) that people look at rather than read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechunits.audio import load_audio
from speechunits.io_utils import atomic_path

PathLike = str | os.PathLike[str]


def plot_spectrograms(panels: Sequence[tuple[str, PathLike]], out: PathLike, *, sample_rate: int = 16000,
                      title: str = "") -> Path:
    """One log-mel spectrogram per (label, audio file), stacked on a shared time axis; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from speechunits.features.mel import LogMel, MelConfig

    mel = LogMel(MelConfig(sample_rate=sample_rate))
    specs = []
    for label, path in panels:
        wave = load_audio(path, sample_rate)
        with torch.no_grad():
            specs.append((label, mel(torch.from_numpy(wave)[None])[0].numpy()))
    longest = max(s.shape[1] for _, s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(10, 1.6 * len(specs) + 0.6), sharex=True, squeeze=False)
    lo = min(float(np.percentile(s, 1)) for _, s in specs)
    hi = max(float(s.max()) for _, s in specs)
    hop_s = MelConfig().hop_length / sample_rate
    for ax, (label, spec) in zip(axes[:, 0], specs):
        ax.imshow(spec, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                  extent=(0, spec.shape[1] * hop_s, 0, spec.shape[0]))
        ax.set_xlim(0, longest * hop_s)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
