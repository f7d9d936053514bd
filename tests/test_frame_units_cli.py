"""``speechunits frame-units``: valid unit set, runs tile the frames and equal a direct assignment,
--codebook reuse, bad audio listed, reruns skipped, errors name the file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits import cli
from speechunits.audio import load_audio
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import sha256_path
from speechunits.quantize import frame_units_cli as fu
from speechunits.quantize.codebook import load_codebook, save_codebook
from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder
from speechunits.units import read_meta, read_units, runs_to_frames, validate_unit_set

SR = 16000
LAYER = 1
K = 5
GOOD = {"a1": (0.45, SR), "a2": (0.8, SR), "b1": (2.3, SR), "b2": (0.3, 8000), "c1": (0.6, SR)}  # b1 > batch


def _args(**kw: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fu.add_arguments(parser)
    argv: list[str] = []
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("frame_units")
    torch.manual_seed(0)
    model = SpeechEncoder(EncoderConfig.tiny())
    save_encoder(root / "model.pt", model)
    rng = np.random.default_rng(0)
    utts = []
    for i, (uid, (seconds, sr)) in enumerate(sorted(GOOD.items())):
        n = int(seconds * sr)
        t = np.arange(n) / sr
        freq = 150.0 * (i + 1) * (1 + t)  # a rising tone plus noise bursts: features change over time
        wave = 0.3 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.05, n) * (np.sin(2 * np.pi * 3 * t) > 0)
        path = root / "wav" / f"{uid}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wave.astype(np.float32), sr, subtype="FLOAT")
        utts.append(Utterance(uid, str(path), text=None, speaker=uid[0]))
    (root / "wav" / "bad.wav").write_bytes(b"RIFF not really a wave file")
    utts.append(Utterance("zbad", str(root / "wav" / "bad.wav"), text=None, speaker="z"))
    sf.write(root / "wav" / "short.wav", np.full(200, 0.1, np.float32), SR, subtype="FLOAT")  # < receptive field
    utts.append(Utterance("zshort", str(root / "wav" / "short.wav"), text=None, speaker="z"))
    write_kaldi_dir(utts, root / "data")
    out = root / "km"
    common = dict(model=root / "model.pt", layer=LAYER, data=root / "data", device="cpu", batch_seconds=2.0,
                  quiet=True)
    assert fu.run(_args(**common, out=out, k=K, max_frames=60, seed=3)) == 0
    return {"root": root, "model": root / "model.pt", "data": root / "data", "out": out}


def _records(unit_dir: Path) -> dict[str, object]:
    return {r.id: r for r in read_units(unit_dir)}


def _file_length(path: Path) -> tuple[int, int]:
    """What a record holds (docs/unit-format.md): the file's own samples and rate, not the 16 kHz ones."""
    info = sf.info(path)
    return info.frames, info.samplerate


def test_output_validates_with_producer(corpus: dict[str, Path]) -> None:
    out = corpus["out"]
    report = validate_unit_set(out, check_audio=True)
    meta = read_meta(out)
    book = load_codebook(out / fu.CODEBOOK_NAME)
    assert meta.kind == "frame" and (meta.sample_rate, meta.hop) == (16000, 320)
    assert meta.vocab_size == K + 1 == book.k + 1 and meta.special_ids["silence"] == K
    assert report.num_utterances == len(GOOD) and report.num_quantized == len(GOOD)
    assert meta.producer["layer"] == LAYER
    assert meta.producer["model"]["sha256"] == sha256_path(corpus["model"])
    assert meta.producer["codebook"]["hash"] == book.hash
    assert book.meta["settings"]["max_frames"] == 60 and book.meta["num_vectors"] == 60
    assert (out / "provenance.json").is_file()


def test_runs_tile_and_equal_direct_assignment(corpus: dict[str, Path]) -> None:
    out = corpus["out"]
    model = load_encoder(corpus["model"], num_layers=LAYER)
    book = load_codebook(out / fu.CODEBOOK_NAME)
    cent = torch.from_numpy(book.centroids)
    recs = _records(out)
    assert sorted(recs) == sorted(GOOD)
    meta = read_meta(out)
    used = set()
    for uid, rec in recs.items():
        wav = torch.from_numpy(load_audio(meta.resolve_audio(rec), SR))
        assert (rec.num_samples, rec.sample_rate) == _file_length(meta.resolve_audio(rec))  # b2: 8 kHz
        with torch.inference_mode():
            layers, lengths = model.extract_features(wav[None], torch.tensor([len(wav)]), num_layers=LAYER)
        feats = layers[LAYER - 1][0, : int(lengths[0])].float()
        n_frames = feats.shape[0]
        # runs tile [0, n_frames): contiguous, start at 0, end at the frame count
        assert rec.starts[0] == 0 and rec.ends[-1] == n_frames == model.frame_lengths(len(wav))
        assert rec.starts[1:] == rec.ends[:-1]
        assert all(a != b for a, b in zip(rec.units, rec.units[1:]))  # deduplicated
        got = runs_to_frames(rec.units, rec.starts, rec.ends)
        dist = torch.cdist(feats, cent) ** 2
        ref = dist.argmin(1).numpy()
        differ = np.flatnonzero(got != ref)
        # batched vs single-utterance features agree up to float rounding: only near-ties may flip
        gap = (dist[differ, got[differ]] - dist[differ, ref[differ]]).abs()
        assert len(differ) <= 1 and bool((gap <= 1e-4 * dist[differ].max(1).values.clamp_min(1.0)).all()), uid
        used.update(rec.units)
    assert len(used) > 1


def test_bad_audio_listed_and_skipped(corpus: dict[str, Path]) -> None:
    lines = (corpus["out"] / fu.BAD_NAME).read_text(encoding="utf-8").splitlines()
    reasons = dict(line.split("\t", 1) for line in lines)
    assert sorted(reasons) == ["zbad", "zshort"]
    assert "bad.wav" in reasons["zbad"]
    assert "receptive field" in reasons["zshort"] and "short.wav" in reasons["zshort"]
    assert not {"zbad", "zshort"} & set(_records(corpus["out"]))


def test_codebook_reuse_gives_same_units(corpus: dict[str, Path]) -> None:
    out2 = corpus["root"] / "km_reuse"
    book = corpus["out"] / fu.CODEBOOK_NAME
    args = _args(model=corpus["model"], layer=LAYER, data=corpus["data"], out=out2, codebook=book, device="cpu",
                 batch_seconds=0.5, quiet=True)
    assert fu.run(args) == 0
    assert not (out2 / fu.CODEBOOK_NAME).exists()
    a, b = _records(corpus["out"]), _records(out2)
    assert sorted(a) == sorted(b)
    for uid in a:
        assert (a[uid].units, a[uid].starts, a[uid].ends) == (b[uid].units, b[uid].starts, b[uid].ends), uid
    assert read_meta(out2).producer["codebook"]["hash"] == load_codebook(book).hash


def test_same_seed_same_codebook_and_rerun_skipped(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out3 = corpus["root"] / "km_again"
    kw = dict(model=corpus["model"], layer=LAYER, data=corpus["data"], out=out3, k=K, max_frames=60, seed=3,
              device="cpu", batch_seconds=2.0, quiet=True)
    assert fu.run(_args(**kw)) == 0
    assert load_codebook(out3 / fu.CODEBOOK_NAME).hash == load_codebook(corpus["out"] / fu.CODEBOOK_NAME).hash
    stamp = (out3 / "units.jsonl").stat().st_mtime_ns

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the model must not be loaded for a complete output")

    monkeypatch.setattr(fu, "load_layer_model", boom)
    capsys.readouterr()
    assert fu.run(_args(**kw)) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert (out3 / "units.jsonl").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # a run killed in pass 2 (no provenance) reuses its codebook instead of re-clustering
    (out3 / "provenance.json").unlink()

    def no_fit(*_a: object, **_k: object) -> None:
        raise AssertionError("pass 1 must be skipped when OUT/codebook.pt matches")

    monkeypatch.setattr(fu, "fit_codebook", no_fit)
    assert fu.run(_args(**kw)) == 0
    assert (out3 / "provenance.json").is_file()
    # a different seed is a different config: pass 1 runs again
    with pytest.raises(AssertionError, match="pass 1"):
        fu.run(_args(**{**kw, "seed": 4}))


def test_errors_name_the_file(corpus: dict[str, Path], tmp_path: Path) -> None:
    base = dict(model=corpus["model"], data=corpus["data"], device="cpu", quiet=True)
    with pytest.raises(CheckpointError, match="model.pt.*layer 3"):
        fu.run(_args(**base, layer=3, out=tmp_path / "o1", k=2))
    wrong = save_codebook(tmp_path / "wrong.pt", np.eye(3, dtype=np.float32), metric="euclidean").path
    with pytest.raises(ConfigError, match="wrong.pt.*dim 3"):
        fu.run(_args(**base, layer=LAYER, out=tmp_path / "o2", codebook=wrong))
    with pytest.raises(CheckpointError, match="missing.pt"):
        fu.run(_args(**{**base, "model": tmp_path / "missing.pt"}, layer=LAYER, out=tmp_path / "o3", k=2))
    with pytest.raises(ConfigError, match="--k 500 is more than"):
        fu.run(_args(**base, layer=LAYER, out=tmp_path / "o4", k=500, max_frames=60))


def test_cli_dispatch(corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "frame-units", ("speechunits.quantize.frame_units_cli", "frame units"))
    base = ["frame-units", "--model", str(corpus["model"]), "--layer", "1", "--data", str(corpus["data"]),
            "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit):  # --k and --codebook are exclusive, one is required
        cli.main(base)
    with pytest.raises(SystemExit):
        cli.main(base + ["--k", "2", "--codebook", str(corpus["out"] / fu.CODEBOOK_NAME)])
    assert cli.main(base + ["--layer", "0", "--k", "2"]) == 2
    assert "--layer must be >= 1" in capsys.readouterr().err
    assert cli.main(base + ["--codebook", str(corpus["out"] / fu.CODEBOOK_NAME)]) == 0
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["config"]["layer"] == 1


# ------------------------------------------------------------------ --features mfcc|logmel (HuBERT iteration 1)
@pytest.fixture(scope="module")
def mfcc_units(corpus: dict[str, Path]) -> Path:
    out = corpus["root"] / "mfcc_km"
    args = _args(features="mfcc", data=corpus["data"], out=out, k=K, max_frames=80, seed=1, device="cpu",
                 batch_seconds=2.0, quiet=True)
    assert fu.run(args) == 0
    return out


def test_features_unit_set_on_the_encoder_grid(corpus: dict[str, Path], mfcc_units: Path) -> None:
    """--features mfcc: a kind=frame set at 50 Hz whose frame i is frame i of a HuBERT-style encoder."""
    from speechunits.features.frame_features import FrameFeatureConfig, mfcc_frames

    report = validate_unit_set(mfcc_units, check_audio=True)
    meta = read_meta(mfcc_units)
    book = load_codebook(mfcc_units / fu.CODEBOOK_NAME)
    assert meta.kind == "frame" and (meta.sample_rate, meta.hop) == (16000, 320) and meta.frame_rate_hz == 50.0
    assert book.dim == 39 and meta.vocab_size == K + 1 and meta.special_ids["silence"] == K
    assert report.num_utterances == len(GOOD)
    assert meta.producer["features"] == "mfcc" and "model" not in meta.producer
    assert meta.producer["feature_config"] == FrameFeatureConfig(kind="mfcc").to_dict()
    assert meta.producer["codebook"]["hash"] == book.hash
    assert json.loads((mfcc_units / "provenance.json").read_text())["config"]["features"]["kind"] == "mfcc"
    encoder = SpeechEncoder(EncoderConfig.tiny())  # the conv stack of HuBERT base (kernel/stride)
    cent = torch.from_numpy(book.centroids)
    used = set()
    for uid, rec in _records(mfcc_units).items():
        wav = torch.from_numpy(load_audio(meta.resolve_audio(rec), SR))
        assert (rec.num_samples, rec.sample_rate) == _file_length(meta.resolve_audio(rec))
        assert rec.starts[0] == 0 and rec.ends[-1] == encoder.frame_lengths(len(wav))
        assert rec.starts[1:] == rec.ends[:-1]
        direct = torch.cdist(mfcc_frames(wav), cent).argmin(1).numpy()
        assert np.array_equal(runs_to_frames(rec.units, rec.starts, rec.ends), direct), uid
        used.update(rec.units)
    assert len(used) > 2
    reasons = dict(line.split("\t", 1) for line in (mfcc_units / fu.BAD_NAME).read_text().splitlines())
    assert sorted(reasons) == ["zbad", "zshort"] and "short.wav" in reasons["zshort"]


def test_features_sharded_jobs_and_rerun(corpus: dict[str, Path], mfcc_units: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--job J tasks then a merge give the single run's units; a rerun does nothing; logmel is another config."""
    out = corpus["root"] / "mfcc_array"
    kw = dict(features="mfcc", data=corpus["data"], out=out, k=K, max_frames=80, seed=1, device="cpu",
              batch_seconds=2.0, quiet=True, nj=2)
    with pytest.raises(ConfigError, match="run the same command without --job first"):
        fu.run(_args(**kw, job=1))
    out.mkdir()
    for name in (fu.CODEBOOK_NAME, fu.CODEBOOK_NAME + ".json"):  # pass 1 of the same settings
        (out / name).write_bytes((mfcc_units / name).read_bytes())
    for job in (1, 0):
        assert fu.run(_args(**kw, job=job)) == 0
    assert not (out / "units.jsonl").exists()
    assert fu.run(_args(**kw)) == 0  # merges
    assert (out / "units.jsonl").read_text() == (mfcc_units / "units.jsonl").read_text()
    capsys.readouterr()
    assert fu.run(_args(**kw)) == 0
    assert "nothing to do" in capsys.readouterr().err
    logmel = corpus["root"] / "logmel_km"
    assert fu.run(_args(**{**kw, "features": "logmel", "out": logmel, "nj": 1})) == 0
    assert load_codebook(logmel / fu.CODEBOOK_NAME).dim == 80 and read_meta(logmel).producer["features"] == "logmel"
    with pytest.raises(ConfigError, match="wrong.pt.*--features logmel dim 80"):
        wrong = save_codebook(corpus["root"] / "wrong.pt", np.eye(3, dtype=np.float32), metric="euclidean").path
        fu.run(_args(features="logmel", data=corpus["data"], out=corpus["root"] / "o5", codebook=wrong, quiet=True))


def test_features_or_model_exactly_one(corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "frame-units", ("speechunits.quantize.frame_units_cli", "frame units"))
    base = ["frame-units", "--data", str(corpus["data"]), "--out", str(tmp_path / "o"), "--k", "2", "--quiet"]
    cases = [
        (["--features", "mfcc", "--model", str(corpus["model"]), "--layer", "1"], "replaces --model/--layer"),
        (["--features", "logmel", "--layer", "1"], "replaces --model/--layer"),
        ([], "give --model CKPT --layer L (encoder features) or --features mfcc|logmel"),
        (["--model", str(corpus["model"])], "--model needs --layer"),
        (["--layer", "2"], "--layer 2 needs --model"),
    ]
    for extra, message in cases:
        assert cli.main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        cli.main(base + ["--features", "plp"])
