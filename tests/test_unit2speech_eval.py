"""Scoring synthesized speech: re-recognition of unit sets, evaluate-synthesis, synthesis-results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError
from speechunits.eval.rerecognition import rerecognition_scores
from speechunits.unit2speech.evaluate import evaluate_synthesis
from speechunits.units import UnitSetWriter

SR = 16000


def _unit_set(path: Path, kind: str, records: dict[str, tuple[list[int], list[int], list[int]]]) -> Path:
    with UnitSetWriter(path, kind=kind, sample_rate=SR, hop=320, vocab_size=11,
                       special_ids={"pad": None, "bos": None, "eos": None, "silence": 10}) as w:
        for uid, (units, starts, ends) in records.items():
            w.add(id=uid, audio=f"{uid}.wav", num_samples=SR, sample_rate=SR, starts=starts, ends=ends, units=units)
    return path


def test_rerecognition_of_frame_units(tmp_path: Path) -> None:
    src = _unit_set(tmp_path / "in", "frame", {"a": ([1, 2, 3, 4], [0, 5, 10, 15], [5, 10, 15, 20]),
                                               "b": ([5, 6], [0, 10], [10, 20])})
    out = _unit_set(tmp_path / "out", "frame", {"a": ([1, 2, 4], [0, 5, 12], [5, 12, 20]),  # one deletion
                                                "b": ([5, 6], [0, 11], [11, 20])})  # exact ids, moved boundary
    scores = rerecognition_scores(src, out)
    assert scores["utterances"] == 2 and scores["missing"] == []
    assert scores["unit_edit_distance_pct"] == pytest.approx(100 * 1 / 6)
    assert "boundaries" not in scores


def test_rerecognition_of_syllables_counts_boundaries_and_missing(tmp_path: Path) -> None:
    src = _unit_set(tmp_path / "in", "syllable", {"a": ([1, 2], [5, 22], [15, 30]),
                                                  "gone": ([3], [0], [10])})
    # boundaries at 5, 15, 22, 30 frames (0.1, 0.3, 0.44, 0.6 s); re-recognised: 0.1 s and 0.6 s hit, 0.36 s misses
    out = _unit_set(tmp_path / "out", "syllable", {"a": ([1, 2], [5, 18], [18, 30])})
    scores = rerecognition_scores(src, out)
    assert scores["missing"] == ["gone"] and scores["utterances"] == 1
    b = scores["boundaries"]
    assert (b["hits"], b["num_pred"], b["num_ref"]) == (2, 3, 4)
    assert b["f1"] == pytest.approx(100 * 2 * 2 / (3 + 4))
    assert scores["unit_edit_distance_pct"] == 0.0


def _tone(path: Path, freq: float, seconds: float = 0.6, noise: float = 0.0) -> None:
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wave += noise * np.random.default_rng(0).normal(size=len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR)


class FakeJudge:
    """Transcribes every waveform as a fixed string per call order."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def transcribe(self, waves, sample_rate, beam=1):  # noqa: ANN001, ANN201 - test double
        assert sample_rate == SR and len(waves) == len(self.texts)
        return list(self.texts)


def _data(tmp_path: Path, name: str, utts: list[Utterance]) -> Path:
    d = tmp_path / name
    d.mkdir()
    write_jsonl_manifest(utts, d / "manifest.jsonl")
    return d


def test_evaluate_synthesis_ground_truth_missing_and_judge(tmp_path: Path) -> None:
    for uid, f in (("u1", 150.0), ("u2", 200.0), ("u3", 120.0)):
        _tone(tmp_path / "ref" / f"{uid}.wav", f)
    _tone(tmp_path / "syn" / "u1.wav", 150.0, noise=0.02)
    _tone(tmp_path / "syn" / "u2.wav", 200.0, seconds=0.9)  # longer: DTW, no STOI
    ref = _data(tmp_path, "refdata", [Utterance(u, str(tmp_path / "ref" / f"{u}.wav"), text=t)
                                      for u, t in (("u1", "A B"), ("u2", "C D"), ("u3", "E F"))])
    syn = _data(tmp_path, "syndata", [Utterance(u, str(tmp_path / "syn" / f"{u}.wav")) for u in ("u1", "u2")])

    truth = evaluate_synthesis("truth", ref, ref, judge=FakeJudge(["A B", "C D", "E F"]), progress=False)
    assert truth.num_scored == 3 and truth.mcd_db == 0.0 and truth.judge_cer == 0.0 and truth.stoi == pytest.approx(1.0)

    rep = evaluate_synthesis("noisy", syn, ref, judge=FakeJudge(["A B", "C X"]), progress=False)
    assert rep.missing == ["u3"] and rep.num_scored == 2 and rep.num_reference == 3
    assert rep.mcd_db > 1.0 and rep.stoi_utterances == 1
    assert rep.judge_cer == pytest.approx(100 * 1 / 6)  # 'C X' vs 'C D': 1 edit in 6 characters (spaces count)
    assert rep.judge_wer == pytest.approx(25.0)
    assert [u["hypothesis"] for u in rep.utterances] == ["A B", "C X"]
    assert rep.log_f0_rmse_cents is not None and rep.log_f0_rmse_cents < 100  # same pitch, DTW-aligned

    no_text = _data(tmp_path, "notext", [Utterance("u1", str(tmp_path / "ref" / "u1.wav"))])
    with pytest.raises(ManifestError, match="no transcript"):
        evaluate_synthesis("x", syn, no_text, judge=FakeJudge(["A"]), progress=False)


def test_evaluate_synthesis_lists_unreadable_audio(tmp_path: Path) -> None:
    _tone(tmp_path / "ref" / "u1.wav", 150.0)
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "u1.wav").write_bytes(b"RIFF....not audio")
    ref = _data(tmp_path, "refdata", [Utterance("u1", str(tmp_path / "ref" / "u1.wav"), text="A")])
    syn = _data(tmp_path, "syndata", [Utterance("u1", str(tmp_path / "syn" / "u1.wav"))])
    rep = evaluate_synthesis("bad", syn, ref, progress=False)
    assert rep.num_scored == 0 and len(rep.bad) == 1 and rep.bad[0].startswith("u1\t") and "u1.wav" in rep.bad[0]
    assert rep.mcd_db is None


def test_evaluate_and_results_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for uid in ("u1", "u2"):
        _tone(tmp_path / "ref" / f"{uid}.wav", 150.0)
        _tone(tmp_path / "syn" / f"{uid}.wav", 150.0, noise=0.05)
    ref = _data(tmp_path, "refdata", [Utterance(u, str(tmp_path / "ref" / f"{u}.wav"), text="A") for u in ("u1", "u2")])
    syn = _data(tmp_path, "syndata", [Utterance(u, str(tmp_path / "syn" / f"{u}.wav")) for u in ("u1", "u2")])
    for name, d in (("truth", ref), ("noisy", syn)):
        assert main(["evaluate-synthesis", "--name", name, "--synth", str(d), "--reference", str(ref), "--quiet",
                     "--out", str(tmp_path / f"{name}.json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "noisy" and summary["num_scored"] == 2 and summary["judge_cer"] is None
    out = tmp_path / "RESULTS.md"
    assert main(["synthesis-results", "--reports", str(tmp_path / "truth.json"), str(tmp_path / "noisy.json"),
                 "--out", str(out), "--figure", str(tmp_path / "spec.png"), "--utt", "u1",
                 "--panel", f"truth={ref}", "--panel", f"noisy={syn}"]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| truth") or line.startswith("| noisy")]
    assert len(rows) == 2 and "| 0.00 |" in rows[0] and "| 2/2 |" in rows[1]
    assert (tmp_path / "spec.png").stat().st_size > 1000 and "![spectrograms of u1](spec.png)" in text
    assert main(["synthesis-results", "--reports", str(tmp_path / "truth.json"), "--out", str(out),
                 "--figure", str(tmp_path / "s.png"), "--utt", "u1", "--panel", "nolabel"]) == 2
