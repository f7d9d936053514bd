"""Inference: inputs from records (stored / predicted durations), synthesize_ids, the synthesize verb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.data.jsonl import read_jsonl_manifest
from speechunits.errors import ConfigError
from speechunits.units import read_meta, read_units
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.model import Vocoder, save_vocoder
from speechunits.vocoder.synthesis import inputs_from_record, synthesize_ids, synthesize_inputs
from vocoder_corpus import EMB_DIM, MEL, SILENCE, TINY_GEN, UNIT_HOP, VOCAB, make_corpus

REPO = Path(__file__).resolve().parents[1]


def unit_model(**kw) -> Vocoder:
    torch.manual_seed(0)
    cfg = VocoderConfig.from_dict({"generator": "istft", "input": "frame_units", "mel": MEL, "cond_dim": 8,
                                   "unit_hop": UNIT_HOP, "vocab_size": VOCAB, "silence_id": SILENCE,
                                   "generator_overrides": TINY_GEN, "duration_channels": 8, **kw})
    return Vocoder(cfg).eval()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("synth_corpus"), n=5, broken=True)


def test_inputs_from_record_stored_and_predicted(corpus):
    meta = read_meta(corpus["units"])
    rec = next(r for r in read_units(corpus["units"], validate=False) if r.id == "utt00")
    model = unit_model(duration_predictor=True)
    x = inputs_from_record(rec, meta, model.cfg)
    frames = meta.audio_frames(rec.num_samples, rec.sample_rate)
    assert x.unit_ids.shape == (1, frames) and int(x.lengths[0]) == frames * 2
    ids = x.unit_ids[0].tolist()
    covered = {f for s, e in zip(rec.starts, rec.ends) for f in range(s, e)}
    assert all(ids[f] == SILENCE for f in range(frames) if f not in covered)  # gaps are silence
    assert ids[rec.starts[0]] == rec.units[0]
    wave = synthesize_inputs(model, x)
    assert wave.dtype == np.float32 and wave.shape == (frames * 2 * MEL["hop_length"],)
    # predicted durations: one run per token or gap, each at least one frame
    with torch.no_grad():
        model.duration.out.bias.fill_(float(np.log(3.0 + 1)))  # exp(pred) - 1 = 3 frames each
        model.duration.out.weight.zero_()
    xp = inputs_from_record(rec, meta, model.cfg, predict_durations=True, model=model)
    runs = len(rec.units) + sum(1 for s, e in zip(rec.starts, [0] + rec.ends[:-1]) if s > e)
    assert xp.unit_ids.shape == (1, 3 * runs)
    assert synthesize_ids(model, [0, 1, SILENCE, 2]).shape == (4 * 3 * 2 * MEL["hop_length"],)
    with pytest.raises(ConfigError, match="duration predictor"):
        inputs_from_record(rec, meta, unit_model().cfg, predict_durations=True, model=unit_model())
    bare = unit_model()  # no duration predictor: one frame per id
    assert synthesize_ids(bare, [0, 1, 2]).shape == (3 * 2 * MEL["hop_length"],)


def test_inputs_from_record_embeddings(corpus):
    meta = read_meta(corpus["units"])
    rec = next(r for r in read_units(corpus["units"], validate=False) if r.id == "utt02")
    cfg = VocoderConfig.from_dict({"generator": "istft", "input": "syllables", "syllable_source": "embedding",
                                   "embedding_dim": EMB_DIM, "mel": MEL, "cond_dim": 8, "unit_hop": UNIT_HOP,
                                   "generator_overrides": TINY_GEN})
    emb = np.arange(rec.num_tokens * EMB_DIM, dtype=np.float32).reshape(rec.num_tokens, EMB_DIM)
    x = inputs_from_record(rec, meta, cfg, embeddings=emb)
    s, e = rec.starts[1], rec.ends[1]
    assert torch.equal(x.unit_vectors[0, s:e], torch.from_numpy(emb[1]).expand(e - s, EMB_DIM))
    assert not x.unit_silence[0, s:e].any() and x.unit_silence[0].any()


def _synth(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "speechunits", "synthesize", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


@pytest.mark.slow
def test_synthesize_cli_sharded_with_bad_record_and_rerun(corpus, tmp_path):
    model_path = tmp_path / "vocoder.pt"
    save_vocoder(model_path, unit_model(duration_predictor=True))
    out = tmp_path / "out"
    args = ["--model", str(model_path), "--units", str(corpus["units"]), "--out", str(out), "--device", "cpu"]
    done = _synth(*args, "--nj", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    utts = read_jsonl_manifest(out / "manifest.jsonl")
    assert [u.id for u in utts] == ["utt00", "utt02", "utt03", "utt04"]
    assert (out / "bad_utts.txt").read_text().startswith("utt01\t")
    assert (out / "provenance.json").is_file()
    u = utts[0]
    assert u.speaker == "s0" and u.text == "TEXT 0" and u.sample_rate == MEL["sample_rate"]
    assert Path(u.audio).is_file() and u.num_samples > 0
    mtime = (out / "wav" / "utt00.flac").stat().st_mtime_ns
    again = _synth(*args, "--nj", "2")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert (out / "wav" / "utt00.flac").stat().st_mtime_ns == mtime
    # a killed run: provenance gone and one file missing -> the rerun makes only that file
    (out / "provenance.json").unlink()
    (out / "wav" / "utt03.flac").unlink()
    resumed = _synth(*args, "--nj", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (out / "wav" / "utt03.flac").is_file() and (out / "wav" / "utt00.flac").stat().st_mtime_ns == mtime
    # other settings into the same directory are refused; predicted durations elsewhere work
    refused = _synth(*args, "--durations", "predicted")
    assert refused.returncode != 0 and "other settings" in refused.stderr
    pred = _synth(*args[:-4], "--out", str(tmp_path / "pred"), "--durations", "predicted")
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert len(read_jsonl_manifest(tmp_path / "pred" / "manifest.jsonl")) == 4


def test_synthesize_cli_refuses_a_mismatched_unit_set(corpus, tmp_path):
    meta = json.loads((corpus["units"] / "meta.json").read_text())
    assert meta["vocab_size"] == VOCAB
    model_path = tmp_path / "vocoder.pt"
    torch.manual_seed(0)
    cfg = unit_model().cfg.to_dict()
    cfg.update(vocab_size=VOCAB + 3, silence_id=VOCAB + 2)
    save_vocoder(model_path, Vocoder(VocoderConfig.from_dict(cfg)))
    done = _synth("--model", str(model_path), "--units", str(corpus["units"]), "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "vocab_size" in done.stderr and not (tmp_path / "o").exists()


def test_synthesize_griffin_lim_baseline_from_a_mel_vocoders_settings(corpus, tmp_path):
    """--griffin-lim inverts the mels the mel vocoder would read; it is refused for a unit vocoder."""
    from speechunits.audio import load_audio
    from speechunits.cli import main

    torch.manual_seed(0)
    cfg = VocoderConfig.from_dict({"generator": "istft", "input": "mel", "mel": MEL, "cond_dim": 8,
                                   "generator_overrides": TINY_GEN})
    save_vocoder(tmp_path / "mel.pt", Vocoder(cfg))
    out = tmp_path / "gl"
    assert main(["synthesize", "--model", str(tmp_path / "mel.pt"), "--data", str(corpus["data"]), "--out", str(out),
                 "--griffin-lim", "--gl-iters", "16", "--device", "cpu"]) == 0
    utts = read_jsonl_manifest(out / "manifest.jsonl")
    assert utts and json.loads((out / "synthesize.json").read_text())["griffin_lim"] == 16
    from speechunits.features.mel import LogMel, MelConfig

    mel = LogMel(MelConfig.from_dict(MEL))
    original = {u.id: u for u in read_jsonl_manifest(corpus["data"] / "manifest.jsonl")}
    for u in utts:
        ref = torch.from_numpy(load_audio(original[u.id].audio, MEL["sample_rate"]))
        hyp = torch.from_numpy(load_audio(u.audio, MEL["sample_rate"]))
        assert len(hyp) == len(ref) // MEL["hop_length"] * MEL["hop_length"]
        target = mel(ref[: len(hyp)])
        error = (mel(hyp) - target).abs().mean()
        silence = (mel(torch.zeros_like(hyp)) - target).abs().mean()
        assert error < 0.25 * silence  # the mels come back (Griffin-Lim is not exact)
    save_vocoder(tmp_path / "units.pt", unit_model())
    assert main(["synthesize", "--model", str(tmp_path / "units.pt"), "--units", str(corpus["units"]),
                 "--out", str(tmp_path / "x"), "--griffin-lim"]) == 2
