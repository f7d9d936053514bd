"""Segmentation figure: waveform, log-mel spectrogram and frame norms with segment spans."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speechunits.io_utils import atomic_path

if TYPE_CHECKING:
    from speechunits.sylber.segmenter import SegmentationResult


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int = 80) -> tuple[np.ndarray, float]:
    """(n_mels, frames) log10 mel power spectrogram (25 ms window, 10 ms hop) and its frame rate."""
    import torch
    import torchaudio

    hop = sample_rate // 100
    spec = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=int(0.025 * sample_rate),
                                                hop_length=hop, n_mels=n_mels)(torch.from_numpy(np.asarray(wave, np.float32)))
    return np.log10(spec.numpy() + 1e-10), sample_rate / hop


def plot_segmentation(
    wave: np.ndarray,
    result: SegmentationResult,
    out_path: str | os.PathLike[str],
    *,
    norm_threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Draw the three panels with segment spans and boundaries and save them atomically (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sr = result.sample_rate
    wave = np.asarray(wave, np.float32)
    duration = len(wave) / sr
    norms = np.linalg.norm(result.hidden_states, axis=1) if result.hidden_states.size else np.zeros(0)
    mel, mel_rate = log_mel(wave, sr)

    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, min(30.0, 2.0 * duration + 4)), 7), sharex=True)
    axes[0].plot(np.arange(len(wave)) / sr, wave, lw=0.5, color="0.2")
    axes[0].set_ylabel("waveform")
    axes[1].imshow(mel, origin="lower", aspect="auto", cmap="magma",
                   extent=(0.0, mel.shape[1] / mel_rate, 0, mel.shape[0]))
    axes[1].set_ylabel("log-mel bin")
    t = (np.arange(len(norms)) + 0.5) / result.frame_rate
    axes[2].plot(t, norms, lw=1.0, color="tab:blue", label="frame norm")
    if norm_threshold is not None:
        axes[2].axhline(norm_threshold, color="tab:red", ls="--", lw=1.0, label=f"norm threshold {norm_threshold:g}")
    axes[2].set_ylabel("feature norm")
    axes[2].set_xlabel("time (s)")
    axes[2].legend(loc="upper right", fontsize="small")
    for i, (start, end) in enumerate(result.segments_seconds):
        for ax in axes:
            ax.axvspan(start, end, color="tab:green" if i % 2 == 0 else "tab:orange", alpha=0.15, lw=0)
            ax.axvline(start, color="k", lw=0.6)
            ax.axvline(end, color="k", lw=0.6, ls=":")
    axes[2].set_xlim(0.0, duration)
    fig.suptitle(title or f"{result.num_segments} segment(s), {duration:.2f} s")
    fig.tight_layout()
    out = Path(out_path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=100)
    finally:
        plt.close(fig)
    return out
