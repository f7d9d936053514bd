"""The boundary shift tuned on a dev set: ``tune-segmentation --export`` stores it in the checkpoint,
``segment``/``tokenize``/``Segmenter`` apply it (times moved, clipped to the audio, empty segments
dropped), ``--shift`` overrides it, and a unit set records it so it is not applied twice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main
from speechunits.data.alignments import Interval, write_textgrid
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.eval.boundaries import evaluate_boundaries, interval_boundaries, segment_boundaries
from speechunits.sylber.boundary_shift import shift_frames, shift_producer, shift_segment_frames, shift_segment_seconds
from speechunits.sylber.segment_sources import make_segment_source
from speechunits.sylber.segmenter import Segmenter
from speechunits.units import read_meta, read_units, validate_unit_set
from synthetic_inputs import randomised_tiny_model, speechlike

SR = 16000
MERGE = 0.9
SHIFT = 0.04  # references lie 40 ms (2 frames) after the model's boundaries


def test_shift_frames_rounds_to_the_nearest_frame() -> None:
    assert shift_frames(0.04, 50) == 2 and shift_frames(-0.04, 50) == -2
    assert shift_frames(-0.015, 50) == -1 and shift_frames(0.009, 50) == 0 and shift_frames(0.01, 50) == 1
    assert shift_producer(-0.015, 50.0) == {"shift": -0.02, "shift_frames": -1, "shift_requested": -0.015}


def test_shifted_segments_are_clipped_ordered_and_non_empty() -> None:
    seg = np.array([[0, 1], [1, 5], [7, 10]])
    moved, keep = shift_segment_frames(seg, -1, 10)
    assert moved.tolist() == [[0, 4], [6, 9]] and keep.tolist() == [1, 2]  # [0, 1) fell off the start
    moved, keep = shift_segment_frames(seg, 2, 10)
    assert moved.tolist() == [[2, 3], [3, 7], [9, 10]] and keep.tolist() == [0, 1, 2]  # end clipped to 10
    moved, keep = shift_segment_frames(seg, 4, 10)
    assert moved.tolist() == [[4, 5], [5, 9]] and keep.tolist() == [0, 1]  # [11, 14) is past the audio
    assert shift_segment_frames(np.zeros((0, 2)), 3, 10)[0].shape == (0, 2)
    secs = shift_segment_seconds(np.array([[0.0, 0.1], [0.5, 0.98]]), 0.03, 1.0)
    np.testing.assert_allclose(secs, [[0.03, 0.13], [0.53, 1.0]])
    np.testing.assert_allclose(shift_segment_seconds(np.array([[0.0, 0.1]]), -0.03, 1.0), [[0.0, 0.07]])


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model (checkpoint without a shift), 3 wavs, and reference TextGrids 40 ms after its segments."""
    root = tmp_path_factory.mktemp("shift")
    model = randomised_tiny_model()
    plain = Segmenter(model, device="cpu", norm_threshold=0.0, merge_threshold=MERGE, shift=0.0)
    norm = float(np.percentile(np.linalg.norm(plain.encode([speechlike(2.0, 0)])[0], axis=1), 30))
    plain.norm_threshold = norm
    ckpt = root / "m.pt"
    save_encoder(ckpt, model, segmentation={"norm_threshold": norm, "merge_threshold": MERGE})
    utts, base = [], {}
    for i, seconds in enumerate((1.2, 1.4, 1.6)):  # whole frames: the audio ends on a frame edge
        wav = speechlike(seconds, i + 3)
        path = root / "wav" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav, SR)
        utts.append(Utterance(id=f"u{i}", audio=str(path), speaker="s"))
        res = plain(str(path))
        base[f"u{i}"] = res
        ref = shift_segment_seconds(res.segments_seconds, SHIFT, seconds)
        write_textgrid(root / "ali" / f"u{i}.TextGrid",
                       {"syllables": [Interval(float(a), float(b), f"s{k}") for k, (a, b) in enumerate(ref) if b > a]},
                       xmax=seconds)
    manifest = root / "data.jsonl"
    write_jsonl_manifest(utts, manifest)
    assert sum(len(r.segments_frames) for r in base.values()) > 3 * len(utts)
    return {"root": root, "model": model, "ckpt": ckpt, "manifest": manifest, "utts": utts, "norm": norm,
            "base": base, "ali": root / "ali"}


def _refs(dev: dict) -> dict[str, np.ndarray]:
    from speechunits.data.alignments import textgrid_syllable_spans

    return {u.id: interval_boundaries(textgrid_syllable_spans(dev["ali"] / f"{u.id}.TextGrid")[1]) for u in dev["utts"]}


def _tune(dev: dict, model: Path, tmp: Path, name: str) -> dict:
    args = ["tune-segmentation", "--model", str(model), "--data", str(dev["manifest"]), "--alignments", str(dev["ali"]),
            "--norm-grid", repr(dev["norm"]), "--merge-grid", str(MERGE), "--shift-grid=-0.06:0.06:0.02",
            "--tolerance", "0.005", "--device", "cpu", "--json", str(tmp / f"{name}.json"),
            "--export", str(tmp / f"{name}.pt")]
    assert main(args) == 0
    return json.loads((tmp / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def tuned(dev: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tuned")
    report = _tune(dev, dev["ckpt"], tmp, "tune")
    assert report["best"]["shift"] == pytest.approx(SHIFT)  # tune_shift adds the shift to the predictions
    return tmp / "tune.pt"


def test_tune_segmentation_exports_the_shift_and_retuning_does_not_add_to_it(dev: dict, tuned: Path,
                                                                              tmp_path: Path) -> None:
    defaults = load_encoder(tuned).segmentation_defaults
    assert defaults["shift"] == pytest.approx(SHIFT)
    assert defaults["norm_threshold"] == pytest.approx(dev["norm"]) and defaults["merge_threshold"] == MERGE
    again = _tune(dev, tuned, tmp_path, "again")  # the sweep scores the raw boundaries, not already shifted ones
    assert again["best"]["shift"] == pytest.approx(SHIFT)
    assert load_encoder(tmp_path / "again.pt").segmentation_defaults["shift"] == pytest.approx(SHIFT)


def test_segmenter_applies_the_checkpoint_shift(dev: dict, tuned: Path) -> None:
    seg = Segmenter(tuned, device="cpu")
    assert seg.shift == pytest.approx(SHIFT)
    for utt in dev["utts"]:
        base, res = dev["base"][utt.id], seg(utt.audio)
        duration = res.num_samples / SR
        moved, keep = shift_segment_frames(base.segments_frames, 2, int(round(duration * 50)))
        np.testing.assert_array_equal(res.segments_frames, moved)
        np.testing.assert_allclose(res.segments_seconds, shift_segment_seconds(base.segments_seconds, SHIFT,
                                                                               duration)[keep])
        np.testing.assert_allclose(res.embeddings, base.embeddings[keep], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(res.hidden_states, base.hidden_states)
        assert res.shift == pytest.approx(SHIFT) and res.shift_frames == 2
    # training sources index the model's own frames: a model:CKPT source ignores the stored shift
    source = make_segment_source(f"model:{tuned}")
    np.testing.assert_array_equal(source.segments(dev["utts"][0]), dev["base"]["u0"].segments_frames)


def _tokenize(dev: dict, model: Path, out: Path, *extra: str) -> None:
    assert main(["tokenize", "--model", str(model), "--data", str(dev["manifest"]), "--out", str(out),
                 "--device", "cpu", "--batch-seconds", "5", "--threads", "1", *extra]) == 0


def test_tokenize_applies_and_records_the_shift(dev: dict, tuned: Path, tmp_path: Path) -> None:
    out = tmp_path / "shifted"
    _tokenize(dev, tuned, out)
    validate_unit_set(out, check_audio=True)
    producer = read_meta(out).producer
    assert producer["shift"] == pytest.approx(SHIFT) and producer["shift_frames"] == 2
    assert producer["shift_requested"] == pytest.approx(SHIFT)
    pred = {rec.id: segment_boundaries(rec.segments, 50.0) for rec in read_units(out)}
    scores = evaluate_boundaries(pred, _refs(dev), tolerance=0.001)  # the references, without any further shift
    assert scores.f1 == pytest.approx(1.0)
    # --shift overrides the checkpoint: 0 gives the model's own frames and records no shift
    plain = tmp_path / "plain"
    _tokenize(dev, tuned, plain, "--shift", "0")
    assert "shift" not in read_meta(plain).producer
    for rec in read_units(plain):
        np.testing.assert_array_equal(rec.segments, dev["base"][rec.id].segments_frames)


def test_eval_boundaries_does_not_shift_a_shifted_set_again(dev: dict, tuned: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--tune-shift-on`` a dev set made with the stored shift finds nothing left to shift."""
    out = tmp_path / "units"
    _tokenize(dev, tuned, out)
    assert main(["eval-boundaries", "--units", str(out), "--alignments", str(dev["ali"]), "--tolerance", "0.005",
                 "--tune-shift-on", str(out), "--shift-grid=-0.06:0.06:0.02", "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["shift"] == 0.0 and report["boundaries"]["f1"] == pytest.approx(100.0)


def test_segment_cli_applies_the_shift_and_prints_a_summary(dev: dict, tuned: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    files = [u.audio for u in dev["utts"]]
    assert main(["segment", *files, "--model", str(tuned), "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    lines = [json.loads(ln) for ln in cap.out.splitlines()]
    refs = _refs(dev)
    for utt, line in zip(dev["utts"], lines):
        assert line["shift"] == pytest.approx(SHIFT)
        np.testing.assert_allclose(interval_boundaries(np.array(line["segments"])), refs[utt.id], atol=1e-6)
    summary = cap.err.strip().splitlines()[-1]
    n_segments = sum(len(line["segments"]) for line in lines)
    assert summary == (f"segment: 3 file(s), {n_segments} segments, 4.2 s of audio -> standard output; "
                       "0 unreadable; shift +40 ms")
    assert main(["segment", files[0], "--model", str(tuned), "--device", "cpu", "--shift", "0",
                 "--format", "tsv", "--out", str(tmp_path / "tsv")]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and f"-> {tmp_path / 'tsv'}; 0 unreadable; shift +0 ms" in cap.err
    rows = [ln.split("\t") for ln in (tmp_path / "tsv" / "u0.tsv").read_text().splitlines()]
    np.testing.assert_allclose([[float(a), float(b)] for _f, a, b in rows], dev["base"]["u0"].segments_seconds,
                               atol=1e-3)
