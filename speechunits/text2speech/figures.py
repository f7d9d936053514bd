"""Figures of TTS outputs (matplotlib, Agg backend, PNG, atomic writes).

* :func:`plot_attention`: one utterance's attention alignment (input symbols against decoder
  steps), titled with its diagonality and failure verdict, so a reader sees what the
  attention figures of the table count.
* :func:`plot_f0_contours`: the F0 contours of prior samples (mode ``text``) of one sentence,
  one panel per temperature, one line per seed: how much a temperature lets prosody vary.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechunits.audio import load_audio
from speechunits.errors import ManifestError
from speechunits.eval.attention_metrics import attention_failure, diagonality
from speechunits.eval.prosody_metrics import semitones
from speechunits.features.f0 import F0Config, extract_f0
from speechunits.io_utils import atomic_path
from speechunits.text2speech.synth_dir import MANIFEST, SynthRow, read_synth_manifest

PathLike = str | os.PathLike[str]
CONTOUR_MARGIN_SEMITONES = 3.0


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: PathLike) -> Path:  # type: ignore[no-untyped-def]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return out


def find_row(synth_dir: PathLike, utt_id: str | None) -> SynthRow:
    """The manifest row ``utt_id`` (default: the first with an attention file)."""
    rows = read_synth_manifest(synth_dir)
    if utt_id is None:
        with_att = [r for r in rows if r.attention is not None]
        if not with_att:
            raise ManifestError(Path(synth_dir) / MANIFEST, "no row has an attention file")
        return with_att[0]
    for row in rows:
        if row.id == utt_id:
            return row
    raise ManifestError(Path(synth_dir) / MANIFEST, f"no synthesized utterance {utt_id!r}")


def plot_attention(synth_dir: PathLike, utt_id: str | None, out: PathLike) -> Path:
    """The attention matrix of one synthesized utterance as an image (PNG)."""
    row = find_row(synth_dir, utt_id)
    if row.attention is None:
        raise ManifestError(Path(synth_dir) / MANIFEST, f"{row.id!r} has no attention file", row.line)
    try:
        att = np.load(row.attention, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as err:
        raise ManifestError(row.attention, f"unreadable attention matrix ({err})") from None
    if att.ndim != 2 or not 1 <= row.num_symbols <= att.shape[1] or not len(att):
        raise ManifestError(row.attention, f"attention of shape {att.shape} does not fit num_symbols={row.num_symbols}")
    failed, reasons = attention_failure(att, row.num_symbols, row.stop_fired)
    diag = diagonality(att, row.num_symbols)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    image = ax.imshow(att[:, :row.num_symbols].T, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_xlabel("decoder step")
    ax.set_ylabel("input symbol")
    verdict = "failed: " + "; ".join(reasons) if failed else "ok"
    ax.set_title(f"{row.id}: diagonality {diag:.2f}, {verdict}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def prior_samples(synth_dirs: Sequence[PathLike], source_id: str | None) -> tuple[str, dict[float | None, list[SynthRow]]]:
    """(sentence, {temperature: its prior-sample rows sorted by seed}) over all ``synth_dirs``; the
    default sentence is the one with the most prior samples (ties: the smallest id)."""
    rows = [r for d in synth_dirs for r in read_synth_manifest(d) if r.mode == "text"]
    if not rows:
        raise ManifestError(Path(synth_dirs[0]) / MANIFEST, "no prior samples (mode 'text') in "
                                                            + ", ".join(str(d) for d in synth_dirs))
    if source_id is None:
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[r.source_id] += 1
        source_id = min(counts, key=lambda s: (-counts[s], s))
    groups: dict[float | None, list[SynthRow]] = defaultdict(list)
    for r in rows:
        if r.source_id == source_id:
            groups[r.temperature].append(r)
    if not groups:
        raise ManifestError(Path(synth_dirs[0]) / MANIFEST, f"no prior samples of {source_id!r} in "
                                                            + ", ".join(str(d) for d in synth_dirs))
    ordered = sorted(groups.items(), key=lambda kv: -np.inf if kv[0] is None else kv[0])
    return source_id, {t: sorted(rs, key=lambda r: r.seed) for t, rs in ordered}


def plot_f0_contours(synth_dirs: Sequence[PathLike], source_id: str | None, out: PathLike,
                     f0_cfg: F0Config = F0Config()) -> Path:
    """Praat F0 contours (semitones re 100 Hz, as the metrics) of one sentence's prior samples: a panel per
    temperature, a line per seed. The F0 axis spans the 5th to 95th percentile of all voiced frames
    plus ``CONTOUR_MARGIN_SEMITONES``, so the tracker's octave jumps leave the frame instead of
    squashing the contours."""
    source_id, groups = prior_samples(synth_dirs, source_id)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), sharey=True, squeeze=False)
    voiced: list[np.ndarray] = []
    for ax, (temperature, rows) in zip(axes[0], groups.items()):
        for row in rows:
            wave = load_audio(row.audio, row.sample_rate)
            f0 = extract_f0(wave, row.sample_rate, f0_cfg).astype(np.float64)
            st = np.full(len(f0), np.nan)  # unvoiced: a gap in the line
            st[f0 > 0] = semitones(f0[f0 > 0])
            voiced.append(st[np.isfinite(st)])
            ax.plot(np.arange(len(st)) * f0_cfg.hop_seconds, st, lw=1.2, label=f"seed {row.seed}")
        ax.set_title(f"temperature {'–' if temperature is None else format(temperature, 'g')}", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.legend(fontsize=7, loc="upper right")
    values = np.concatenate(voiced) if voiced else np.zeros(0)
    if values.size:  # the tracker's octave jumps would squash the contours: show the 5th-95th percentile
        lo, hi = np.percentile(values, [5, 95])
        axes[0, 0].set_ylim(lo - CONTOUR_MARGIN_SEMITONES, hi + CONTOUR_MARGIN_SEMITONES)
    axes[0, 0].set_ylabel("F0 (semitones re 100 Hz)")
    fig.suptitle(f"F0 of prior samples of {source_id}", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


__all__ = ["find_row", "plot_attention", "plot_f0_contours", "prior_samples"]
