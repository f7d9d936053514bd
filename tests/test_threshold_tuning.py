"""Segmentation-threshold tuning on a labelled dev set: the grid sweep and ``tune-segmentation``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli import main
from speechunits.data.alignments import Interval, write_textgrid
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.sylber.threshold_sweep import best_point, plot_sweep, sweep_thresholds
from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder

SR = 16000


def piecewise_features(rng: np.random.Generator, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames constant within segments (norm 3, random directions), zero in the gaps; true boundaries (s)."""
    frames, bounds, t = [], [], 0
    for _ in range(n_segments):
        gap = int(rng.integers(0, 4))
        frames += [np.zeros(16, np.float32)] * gap
        t += gap
        direction = rng.standard_normal(16).astype(np.float32)
        length = int(rng.integers(6, 15))
        frames += [3.0 * direction / np.linalg.norm(direction)] * length
        bounds += [t / 50.0, (t + length) / 50.0]
        t += length
    return np.stack(frames), np.unique(np.round(bounds, 6))


def test_sweep_finds_the_thresholds_that_recover_the_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    states, refs = {}, {}
    for i in range(5):
        states[f"u{i}"], refs[f"u{i}"] = piecewise_features(rng, 8)
    refs = {u: r + 0.02 for u, r in refs.items()}  # references 20 ms later than the features say
    seconds = sum(len(s) for s in states.values()) / 50
    points = sweep_thresholds(states, refs, [1.0, 5.0], [0.5, 0.99], frame_rate=50.0, seconds=seconds,
                              shift_grid=(-0.02, 0.0, 0.02), tolerance=0.01)
    assert len(points) == 4
    by_pair = {(p.norm_threshold, p.merge_threshold): p for p in points}
    assert by_pair[(5.0, 0.5)].scores.num_pred == 0  # every frame is below the norm threshold
    best = best_point(points, "f1")
    assert best.norm_threshold == 1.0 and best.shift == pytest.approx(0.02)
    assert best.scores.f1 == pytest.approx(1.0)
    assert best_point(points, "r_value").norm_threshold == 1.0
    with pytest.raises(ValueError, match="metric"):
        best_point(points, "accuracy")
    with pytest.raises(KeyError, match="no features"):
        sweep_thresholds({}, refs, [1.0], [0.5], frame_rate=50.0, seconds=1.0)
    plot_sweep(points, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def _dev_set(root: Path, n: int = 4) -> tuple[Path, Path]:
    """Tone 'syllables' with TextGrid references; the last utterance has no TextGrid."""
    rng = np.random.default_rng(1)
    utts = []
    for i in range(n):
        wav = 0.001 * rng.standard_normal(int(1.5 * SR)).astype(np.float32)
        sylls, t = [], 0.1
        while t < 1.3:
            dur = float(rng.uniform(0.12, 0.22))
            a, b = int(t * SR), int((t + dur) * SR)
            wav[a:b] += 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * np.arange(b - a) / SR)
            sylls.append(Interval(t, t + dur, f"s{len(sylls)}"))
            t += dur + float(rng.uniform(0.03, 0.1))
        sf.write(root / f"u{i}.wav", wav, SR)
        utts.append(Utterance(id=f"u{i}", audio=str(root / f"u{i}.wav"), text=None, speaker="s0"))
        if i < n - 1:
            write_textgrid(root / "ali" / f"u{i}.TextGrid", {"syllables": sylls}, xmax=1.5)
    write_kaldi_dir(utts, root / "data")
    return root / "data", root / "ali"


def test_tune_segmentation_cli_writes_report_plot_and_tuned_checkpoint(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data, ali = _dev_set(tmp_path)
    torch.manual_seed(0)
    save_encoder(tmp_path / "m.pt", SpeechEncoder(EncoderConfig.tiny()),
                      segmentation={"norm_threshold": 3.0, "merge_threshold": 0.8, "speech_mean": 4.0})
    args = ["tune-segmentation", "--model", str(tmp_path / "m.pt"), "--data", str(data), "--alignments", str(ali),
            "--merge-grid", "0.5,0.9", "--device", "cpu", "--json", str(tmp_path / "tune.json"),
            "--plot", str(tmp_path / "tune.png"), "--export", str(tmp_path / "tuned.pt")]
    assert main(args) == 0
    report = json.loads((tmp_path / "tune.json").read_text())
    assert report["utterances"] == 3 and report["missing_ids"] == ["u3"]
    assert "have no TextGrid" in capsys.readouterr().err
    # default norm grid: 0.4 ... 1.4 x the checkpoint's threshold
    norms = sorted({p["norm_threshold"] for p in report["grid"]})
    assert norms[0] == pytest.approx(1.2) and norms[-1] == pytest.approx(4.2) and len(report["grid"]) == 2 * len(norms)
    assert report["best"]["f1"] == max(p["f1"] for p in report["grid"])
    assert report["checkpoint_defaults"]["norm_threshold"] == 3.0 and "f1" in report["checkpoint_defaults"]
    tuned = load_encoder(tmp_path / "tuned.pt")
    assert tuned.segmentation_defaults["norm_threshold"] == pytest.approx(report["best"]["norm_threshold"])
    assert tuned.segmentation_defaults["merge_threshold"] == pytest.approx(report["best"]["merge_threshold"])
    assert tuned.segmentation_defaults["speech_mean"] == 4.0  # the rest of the record is kept
    original = load_encoder(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), tuned.state_dict().values()))
    assert (tmp_path / "tune.png").is_file()


def test_tune_segmentation_without_any_alignment_names_the_directory(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = _dev_set(tmp_path, n=2)
    save_encoder(tmp_path / "m.pt", SpeechEncoder(EncoderConfig.tiny()))
    (tmp_path / "empty").mkdir()
    args = ["tune-segmentation", "--model", str(tmp_path / "m.pt"), "--data", str(data),
            "--alignments", str(tmp_path / "empty"), "--device", "cpu", "--export", str(tmp_path / "tuned.pt")]
    assert main(args) == 2
    assert f"{tmp_path / 'empty'}: no <utt id>.TextGrid found" in capsys.readouterr().err
    assert not (tmp_path / "tuned.pt").exists()
