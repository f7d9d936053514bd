"""``speechunits resynthesize``: audio -> (frame units | Sylber syllables | mels) -> vocoder -> audio, with plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli import main
from speechunits.encoders.checkpoints import save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder
from speechunits.quantize.codebook import save_codebook
from speechunits.unit2speech.tokenizers import FrameUnitTokenizer, SyllableTokenizer
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.model import Vocoder, save_vocoder

SR = 16000
K = 6
MEL = {"sample_rate": SR, "n_fft": 512, "win_length": 512, "hop_length": 160, "n_mels": 20, "f_max": 8000.0}
GEN = {"dim": 16, "intermediate_dim": 32, "num_layers": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resynth")
    torch.manual_seed(0)
    encoder = SpeechEncoder(EncoderConfig.tiny())
    save_encoder(root / "encoder.pt", encoder)
    rng = np.random.default_rng(0)
    save_codebook(root / "km.npy", rng.normal(size=(K, encoder.embed_dim)).astype(np.float32), metric="euclidean")
    t = np.arange(int(1.3 * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * 180 * (1 + t) * t) * (np.sin(2 * np.pi * 2 * t) > -0.3)
    sf.write(root / "a.wav", wave.astype(np.float32), SR)
    sf.write(root / "b.wav", wave[: SR // 2].astype(np.float32), SR)
    models = {"units": {"input": "frame_units", "unit_hop": 320, "vocab_size": K + 1, "silence_id": K},
              "syllables": {"input": "syllables", "unit_hop": 320, "vocab_size": K + 1, "silence_id": K,
                            "duration_predictor": True},
              "mel": {"input": "mel"}}
    for name, extra in models.items():
        torch.manual_seed(0)
        cfg = VocoderConfig.from_dict({"generator": "istft", "mel": MEL, "cond_dim": 8, "generator_overrides": GEN,
                                       **extra})
        save_vocoder(root / f"{name}.pt", Vocoder(cfg))
    return {"root": root, "encoder": root / "encoder.pt", "km": root / "km.npy"}


def test_tokenizers_give_records_on_the_encoder_grid(setup: dict[str, Path]) -> None:
    frames = FrameUnitTokenizer(setup["encoder"], setup["km"], layer=1)
    (tok,) = frames([setup["root"] / "a.wav"])
    rec = tok.record
    assert frames.meta.kind == "frame" and frames.meta.hop == 320 and frames.meta.vocab_size == K + 1
    assert rec.starts[0] == 0 and all(s == e for s, e in zip(rec.starts[1:], rec.ends[:-1]))  # contiguous runs
    assert int(1.3 * SR) // 320 - 2 <= rec.ends[-1] <= int(1.3 * SR) // 320  # the encoder's frames of 1.3 s
    assert all(0 <= u < K for u in rec.units)
    syllables = SyllableTokenizer(setup["encoder"], setup["km"])
    (tok,) = syllables([setup["root"] / "a.wav"])
    assert syllables.meta.special_ids["silence"] == K and tok.embeddings.shape == (tok.record.num_tokens, 64)
    assert tok.record.units is not None and len(tok.record.units) == tok.record.num_tokens


@pytest.mark.parametrize("kind", ["units", "syllables", "mel"])
def test_resynthesize_writes_audio_and_plots(setup: dict[str, Path], tmp_path: Path, kind: str) -> None:
    args = ["resynthesize", str(setup["root"] / "a.wav"), str(setup["root"] / "b.wav"),
            "--model", str(setup["root"] / f"{kind}.pt"), "--out", str(tmp_path), "--plot"]
    if kind != "mel":
        args += ["--tokenizer", str(setup["encoder"]), "--codebook", str(setup["km"])]
    if kind == "units":
        args += ["--layer", "1"]
    assert main(args) == 0
    for name, seconds in (("a", 1.3), ("b", 0.5)):
        wave, sr = sf.read(tmp_path / f"{name}.flac")
        assert sr == SR and np.isfinite(wave).all()
        if kind != "syllables":  # a random encoder may find no syllable at all: then only leading silence is made
            assert abs(len(wave) - seconds * SR) <= 480
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    if kind == "syllables":
        assert main(args + ["--durations", "predicted"]) == 0


def test_resynthesize_errors_name_what_is_missing(setup: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    wav = str(setup["root"] / "a.wav")
    assert main(["resynthesize", wav, "--model", str(setup["root"] / "syllables.pt"), "--out", str(tmp_path),
                 "--tokenizer", str(setup["encoder"])]) == 2
    assert "--codebook" in capsys.readouterr().err
    assert main(["resynthesize", wav, "--model", str(setup["root"] / "units.pt"), "--out", str(tmp_path)]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    (tmp_path / "cut.pt").write_bytes((setup["root"] / "mel.pt").read_bytes()[:100])
    assert main(["resynthesize", wav, "--model", str(tmp_path / "cut.pt"), "--out", str(tmp_path)]) == 2
    assert "cut.pt" in capsys.readouterr().err
