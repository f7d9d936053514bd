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
from speechunits.sylber.threshold_sweep import SweepPoint, best_point, extend_sweep, plot_sweep, sweep_thresholds
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
    cap = capsys.readouterr()
    assert "have no TextGrid" in cap.err
    # default norm grid: 0.4 ... 1.4 x the checkpoint's threshold (step 0.3), grown past the edge the best lies on
    norms = sorted({p["norm_threshold"] for p in report["grid"]})
    ext = report["grid_extensions"]
    low = [e["value"] for e in ext if e["axis"] == "norm_threshold" and e["side"] == "low"]
    high = [e["value"] for e in ext if e["axis"] == "norm_threshold" and e["side"] == "high"]
    assert norms[0] == pytest.approx(low[-1] if low else 1.2) and norms[-1] == pytest.approx(high[-1] if high else 4.2)
    assert [round(n, 4) for n in norms] == [round(1.2 + 0.3 * i, 4) for i in range(-len(low), 11 + len(high))]
    assert len(report["grid"]) == len(norms) * len({p["merge_threshold"] for p in report["grid"]})
    assert report["max_extensions"] == 4 and all(0 <= e["value"] < 1 for e in ext if e["axis"] == "merge_threshold")
    assert cap.out.count("grid extended:") == len(ext)
    assert report["best"]["f1"] == max(p["f1"] for p in report["grid"])
    assert report["checkpoint_defaults"]["norm_threshold"] == 3.0 and "f1" in report["checkpoint_defaults"]
    tuned = load_encoder(tmp_path / "tuned.pt")
    assert tuned.segmentation_defaults["norm_threshold"] == pytest.approx(report["best"]["norm_threshold"])
    assert tuned.segmentation_defaults["merge_threshold"] == pytest.approx(report["best"]["merge_threshold"])
    assert tuned.segmentation_defaults["shift"] == pytest.approx(report["best"]["shift"])  # the pair's tuned shift
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


def _objective_sweep(peak: tuple[float, float], calls: list[tuple[float, float]]):
    """A sweep whose F1 peaks at ``peak`` (norm, merge); records every pair it scores in ``calls``."""
    from speechunits.eval.boundaries import BoundaryScores

    def sweep(norms, merges):
        points = []
        for n in norms:
            for m in merges:
                calls.append((n, m))
                f1 = 1.0 - (n - peak[0]) ** 2 - (m - peak[1]) ** 2
                points.append(SweepPoint(float(n), float(m), 0.0, BoundaryScores(f1, f1, f1, 0.0, f1, 1, 1, 1), 4.0))
        return points

    return sweep


def test_grid_extends_past_the_edge_the_best_point_lies_on() -> None:
    calls: list[tuple[float, float]] = []
    sweep = _objective_sweep((0.6, 0.72), calls)
    norms, merges = (1.2, 1.5, 1.8), (0.5, 0.6)
    points, ext = extend_sweep(sweep(norms, merges), norms, merges, sweep, "f1", max_extensions=5)
    # the corner (1.2, 0.6) first grows the norm axis down to the optimum's row and one past it, then merge up
    assert [(e.axis, e.side, e.value) for e in ext] == [
        ("norm_threshold", "low", 0.9), ("norm_threshold", "low", 0.6), ("norm_threshold", "low", 0.3),
        ("merge_threshold", "high", 0.7), ("merge_threshold", "high", 0.8)]
    assert [e.points for e in ext] == [2, 2, 2, 6, 6]  # only the new points: a row or a column of the grid so far
    assert (ext[0].best_before.norm_threshold, ext[0].best_before.merge_threshold) == (1.2, 0.6)
    assert len(calls) == len(set(calls)) == len(points) == 6 * 4  # a rectangle, every pair scored once
    best = best_point(points, "f1")
    assert (best.norm_threshold, best.merge_threshold) == (0.6, 0.7)
    assert ext[-1].as_dict()["best_before"] == {"norm_threshold": 0.6, "merge_threshold": 0.7,
                                                "f1": pytest.approx(100 * (1 - 0.02 ** 2)),
                                                "r_value": pytest.approx(100 * (1 - 0.02 ** 2))}
    # bounded: with 4 extensions the best may still sit on an edge
    calls.clear()
    points, ext = extend_sweep(sweep(norms, merges), norms, merges, sweep, "f1", max_extensions=4)
    assert len(ext) == 4 and best_point(points, "f1").merge_threshold == 0.7


def test_grid_extension_stays_within_the_valid_thresholds() -> None:
    calls: list[tuple[float, float]] = []
    # optimum below norm 0 and above merge 1: the grid cannot grow past norm 0.1 - 0.1 = 0 or merge 0.9 + 0.1 = 1
    sweep = _objective_sweep((-1.0, 1.5), calls)
    points, ext = extend_sweep(sweep((0.1, 0.2), (0.8, 0.9)), (0.2, 0.1), (0.8, 0.9), sweep, "f1")
    assert ext == [] and len(points) == 4
    # a single value on an axis gives no step to grow by; max_extensions=0 never grows
    sweep = _objective_sweep((5.0, 0.5), calls)
    assert extend_sweep(sweep((1.0,), (0.5,)), (1.0,), (0.5,), sweep, "f1")[1] == []
    assert extend_sweep(sweep((1.0, 2.0), (0.5,)), (1.0, 2.0), (0.5,), sweep, "f1", max_extensions=0)[1] == []
    points, ext = extend_sweep(sweep((1.0, 2.0), (0.5,)), (1.0, 2.0), (0.5,), sweep, "f1", max_extensions=2)
    assert [(e.side, e.value) for e in ext] == [("high", 3.0), ("high", 4.0)]
    with pytest.raises(ValueError, match="max_extensions"):
        extend_sweep(points, (1.0,), (0.5,), sweep, "f1", max_extensions=-1)
