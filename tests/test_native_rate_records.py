"""``bootstrap-segments``, ``tokenize``, ``frame-units`` (``--features mfcc`` and ``--model``) and the
``resynthesize`` tokenizers on audio that is not 16 kHz mono: every record holds the audio file's own
``num_samples`` and ``sample_rate`` (docs/unit-format.md), so ``validate-units --check-audio`` accepts
their output; the frames stay on the 16000/320 grid. The corpus commands end with a summary line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.audio import load_audio
from speechunits.cli import main
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import save_encoder
from speechunits.quantize.codebook import save_codebook
from speechunits.sylber.segmenter import Segmenter
from speechunits.unit2speech.tokenizers import FrameUnitTokenizer, SyllableTokenizer
from speechunits.units import UnitSetWriter, read_meta, read_units, validate_unit_set
from synthetic_inputs import randomised_tiny_model, speechlike

SR = 16000
RATES = {"r22050": 22050, "r44100": 44100, "r08000": 8000, "r20000": 20000, "stereo22050": 22050, "r16000": SR}
SECONDS = 1.0


def _resample(wav: np.ndarray, sr: int) -> np.ndarray:
    """The 16 kHz test signal at ``sr`` (linear interpolation: the content barely matters)."""
    n = int(round(len(wav) * sr / SR)) + 7  # +7: a length that is no whole number of 16 kHz samples
    return np.interp(np.arange(n) * SR / sr, np.arange(len(wav)), wav).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Wavs at 22.05, 44.1, 8, 20 and 16 kHz (one stereo) and their manifest; the file facts per id."""
    root = tmp_path_factory.mktemp("rates")
    utts, facts = [], {}
    for i, (uid, sr) in enumerate(sorted(RATES.items())):
        wav = _resample(speechlike(SECONDS, i), sr)
        if uid.startswith("stereo"):
            wav = np.stack([wav, 0.5 * wav], axis=1)  # (frames, 2): mixed to mono when read
        path = root / "wav" / f"{uid}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav, sr)
        info = sf.info(path)
        facts[uid] = (info.frames, info.samplerate, info.channels)
        utts.append(Utterance(id=uid, audio=str(path), speaker="s"))
    manifest = root / "data.jsonl"
    write_jsonl_manifest(utts, manifest)
    assert facts["stereo22050"][2] == 2 and facts["r08000"][1] == 8000
    return {"root": root, "manifest": manifest, "utts": utts, "facts": facts}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny encoder checkpoint whose stored norm threshold gives several segments, and a 4-centroid codebook."""
    root = tmp_path_factory.mktemp("tiny")
    model = randomised_tiny_model()
    states = Segmenter(model, device="cpu", norm_threshold=0.0).encode([speechlike(2.0, 0)])[0]
    norm = float(np.percentile(np.linalg.norm(states, axis=1), 30))  # some frames below: several segments
    save_encoder(root / "tiny.pt", model, segmentation={"norm_threshold": norm, "merge_threshold": 0.9})
    save_codebook(root / "km.npy", states[:: max(1, len(states) // 4)][:4].astype(np.float32), metric="euclidean")
    return {"ckpt": root / "tiny.pt", "km": root / "km.npy", "norm": norm}


def _encoder_frames(path: str) -> int:
    """Frames of a HuBERT-style conv stack (window 400, hop 320) over the audio read at 16 kHz."""
    return (len(load_audio(path, SR)) - 400) // 320 + 1


def _check_records(out: Path, facts: dict) -> None:
    report = validate_unit_set(out, check_audio=True)  # what `validate-units --check-audio` runs
    assert report.audio_checked == len(facts)
    meta = read_meta(out)
    assert (meta.sample_rate, meta.hop) == (SR, 320)
    for rec in read_units(out):
        frames, rate, _channels = facts[rec.id]
        assert (rec.num_samples, rec.sample_rate) == (frames, rate), rec.id
        assert rec.duration == pytest.approx(SECONDS, abs=0.01)
        if rec.num_tokens:  # the frames are counted on the 16 kHz grid whatever the file's rate
            assert rec.ends[-1] <= meta.audio_frames(rec.num_samples, rec.sample_rate) + 1


def test_bootstrap_segments_records_each_files_own_rate(corpus: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "boot"
    assert main(["bootstrap-segments", "--data", str(corpus["manifest"]), "--out", str(out)]) == 0
    _check_records(out, corpus["facts"])
    assert sum(r.num_tokens for r in read_units(out)) > len(corpus["facts"])  # it really segmented them
    err = capsys.readouterr().err
    summary = [ln for ln in err.splitlines() if ln.startswith("bootstrap-segments: wrote")]
    assert len(summary) == 1, err
    assert f"wrote {out}: {len(corpus['facts'])} utterance(s) in units.jsonl, 0 in bad_utts.txt" in summary[0]
    seconds = float(summary[0].split(" in bad_utts.txt, ")[1].split(" s of audio")[0])
    assert seconds == pytest.approx(len(corpus["facts"]) * SECONDS, abs=0.1)


def test_bootstrap_segments_reads_lengths_from_files_and_pipe_lengths_from_the_manifest(corpus: dict,
                                                                                         tmp_path: Path) -> None:
    """A file's record holds its header's length even when the manifest claims another; a pipe command's
    holds the manifest's, and a decoded length that disagrees makes it a bad utterance."""
    wrong = corpus["utts"][0]
    frames, rate, _ = corpus["facts"][wrong.id]
    utts = [Utterance(id=wrong.id, audio=wrong.audio, num_samples=frames + rate, sample_rate=rate)]
    for u, extra in ((corpus["utts"][1], 0), (corpus["utts"][2], 100)):  # pipe commands: right, stale
        frames, rate, _ = corpus["facts"][u.id]
        utts.append(Utterance(id=f"pipe-{u.id}", audio=f"cat {u.audio} |", num_samples=frames + extra,
                              sample_rate=rate))
    manifest = tmp_path / "lengths.jsonl"
    write_jsonl_manifest(utts, manifest)
    out = tmp_path / "boot"
    assert main(["bootstrap-segments", "--data", str(manifest), "--out", str(out)]) == 0
    bad = (out / "bad_utts.txt").read_text().splitlines()
    assert [ln.split("\t")[0] for ln in bad] == [f"pipe-{corpus['utts'][2].id}"] and "stale" in bad[0]
    records = {r.id: r for r in read_units(out)}
    assert (records[wrong.id].num_samples, records[wrong.id].sample_rate) == corpus["facts"][wrong.id][:2]
    piped = records[f"pipe-{corpus['utts'][1].id}"]
    assert (piped.num_samples, piped.sample_rate) == corpus["facts"][corpus["utts"][1].id][:2]


def test_tokenize_records_each_files_own_rate(corpus: dict, tiny: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tok"
    argv = ["tokenize", "--model", str(tiny["ckpt"]), "--data", str(corpus["manifest"]), "--out", str(out),
            "--device", "cpu", "--norm-threshold", repr(tiny["norm"]), "--merge-threshold", "0.9",
            "--batch-seconds", "5", "--threads", "1"]
    assert main(argv) == 0
    _check_records(out, corpus["facts"])
    assert sum(r.num_tokens for r in read_units(out)) > len(corpus["facts"])
    err = capsys.readouterr().err
    assert f"tokenize: wrote {out}: {len(corpus['facts'])} utterance(s) in units.jsonl, 0 in bad_utts.txt, " in err
    assert json.loads((out / "meta.json").read_text())["producer"]["segmenter"] == "sylber-greedy"


@pytest.mark.parametrize("frames", ["mfcc", "model"])
def test_frame_units_records_each_files_own_rate(corpus: dict, tiny: dict, tmp_path: Path, frames: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``frame-units`` from MFCCs (HuBERT iteration 1) and from an encoder layer: file-rate records whose
    runs tile the encoder's frames of the audio read at 16 kHz."""
    out = tmp_path / "fu"
    source = ["--features", "mfcc"] if frames == "mfcc" else ["--model", str(tiny["ckpt"]), "--layer", "1"]
    argv = ["frame-units", *source, "--data", str(corpus["manifest"]), "--out", str(out), "--k", "3",
            "--max-frames", "200", "--iters", "5", "--device", "cpu", "--batch-seconds", "5", "--num-workers", "1",
            "--threads", "1", "--quiet"]
    assert main(argv) == 0
    _check_records(out, corpus["facts"])
    meta = read_meta(out)
    for rec in read_units(out):
        assert rec.starts[0] == 0 and rec.starts[1:] == rec.ends[:-1]
        assert rec.ends[-1] == _encoder_frames(str(meta.resolve_audio(rec))), rec.id  # the model's grid
    err = capsys.readouterr().err
    assert f"frame-units: wrote {out}: {len(corpus['facts'])} utterance(s) in units.jsonl, 0 in bad_utts.txt" in err


def test_resynthesize_tokenizers_record_each_files_own_rate(corpus: dict, tiny: dict, tmp_path: Path) -> None:
    """The records ``resynthesize`` hands the vocoder are those of a unit set: written out, they pass the
    audio check, and the vocoder's frame grid (``meta.audio_frames``) is that of the audio read at 16 kHz."""
    paths = [Path(u.audio) for u in corpus["utts"]]
    tokenizers = {"frame": FrameUnitTokenizer(tiny["ckpt"], tiny["km"], layer=1),
                  "syllable": SyllableTokenizer(tiny["ckpt"], tiny["km"])}
    for name, tokenizer in tokenizers.items():
        meta = tokenizer.meta
        out = tmp_path / name
        with UnitSetWriter(out, kind=meta.kind, sample_rate=meta.sample_rate, hop=meta.hop,
                           vocab_size=meta.vocab_size, special_ids=meta.special_ids) as writer:
            for tok in tokenizer(paths):
                writer.add(**tok.record.to_dict())
                grid = -(-len(load_audio(tok.record.audio, SR)) // meta.hop)
                assert meta.audio_frames(tok.record.num_samples, tok.record.sample_rate) == grid, tok.record.id
        _check_records(out, corpus["facts"])
        records = list(read_units(out))
        if name == "frame":  # runs over every frame of the encoder's grid
            assert all(r.ends[-1] == _encoder_frames(r.audio) for r in records)
        else:
            assert sum(r.num_tokens for r in records) > len(paths)  # it really segmented them
