"""``bootstrap-segments`` and ``tokenize`` on audio that is not 16 kHz mono: every record holds the audio
file's own ``num_samples`` and ``sample_rate`` (docs/unit-format.md), so ``validate-units --check-audio``
accepts their output; the frames stay on the 16000/320 grid. Both commands end with a summary line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import save_encoder
from speechunits.sylber.segmenter import Segmenter
from speechunits.units import read_meta, read_units, validate_unit_set
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


def test_tokenize_records_each_files_own_rate(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = randomised_tiny_model()
    ckpt = tmp_path / "tiny.pt"
    save_encoder(ckpt, model)
    states = Segmenter(model, device="cpu", norm_threshold=0.0).encode([speechlike(2.0, 0)])[0]
    norm = float(np.percentile(np.linalg.norm(states, axis=1), 30))  # some frames below: several segments
    out = tmp_path / "tok"
    argv = ["tokenize", "--model", str(ckpt), "--data", str(corpus["manifest"]), "--out", str(out), "--device", "cpu",
            "--norm-threshold", repr(norm), "--merge-threshold", "0.9", "--batch-seconds", "5", "--threads", "1"]
    assert main(argv) == 0
    _check_records(out, corpus["facts"])
    assert sum(r.num_tokens for r in read_units(out)) > len(corpus["facts"])
    err = capsys.readouterr().err
    assert f"tokenize: wrote {out}: {len(corpus['facts'])} utterance(s) in units.jsonl, 0 in bad_utts.txt, " in err
    assert json.loads((out / "meta.json").read_text())["producer"]["segmenter"] == "sylber-greedy"
