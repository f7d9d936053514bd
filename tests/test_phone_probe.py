"""``speechunits probe-phones``: frame labels at the receptive-field centre, system specs, every layer of
an encoder from one pass, and the CLI end to end (JSON, Markdown, PNG, summary, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits import cli
from speechunits.data.alignments import Interval, write_textgrid
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder
from speechunits.errors import CheckpointError, ConfigError
from speechunits.quantize import phone_probe as pp

SR = 16000
# phone -> (tone Hz or None for noise, amplitude); each utterance is pau + phones + pau
SOUNDS = {"AA1": (300.0, 0.5), "S": (None, 0.3), "M": (1200.0, 0.3)}
UTTS = {"b-1": ["AA1", "S", "M", "AA1"], "c-2": ["M", "AA1", "S", "S"], "d-3": ["S", "M"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe")
    torch.manual_seed(0)
    save_encoder(root / "model.pt", SpeechEncoder(EncoderConfig.tiny()))
    rng = np.random.default_rng(0)
    utts = []
    for uid, phones in UTTS.items():
        pieces, tier, t = [np.zeros(int(0.2 * SR))], [Interval(0.0, 0.2, "pau")], 0.2
        for phone in phones:
            n = int(0.16 * SR)
            freq, amp = SOUNDS[phone]
            wave = amp * (np.sin(2 * np.pi * freq * np.arange(n) / SR) if freq else rng.normal(0, 1, n))
            pieces.append(wave)
            tier.append(Interval(t, t + 0.16, phone))
            t += 0.16
        pieces.append(np.zeros(int(0.2 * SR)))
        tier.append(Interval(t, t + 0.2, "sil"))
        audio = np.concatenate(pieces).astype(np.float32)
        sf.write(root / f"{uid}.wav", audio, SR, subtype="FLOAT")
        write_textgrid(root / "ali" / uid[0] / f"{uid}.TextGrid",
                       {"words": [Interval(0.2, t, "word")], "phones": tier}, xmax=len(audio) / SR)
        utts.append(Utterance(uid, str(root / f"{uid}.wav"), text=None, speaker="s"))
    sf.write(root / "a-none.wav", np.zeros(SR, np.float32), SR, subtype="FLOAT")  # no TextGrid
    utts.append(Utterance("a-none", str(root / "a-none.wav"), text=None, speaker="s"))
    write_kaldi_dir(utts, root / "data")
    return {"root": root, "data": root / "data", "ali": root / "ali", "model": root / "model.pt"}


def test_frames_labelled_by_the_phone_at_their_centre() -> None:
    tier = [Interval(0.0, 0.1, "pau"), Interval(0.1, 0.15, "AH1"), Interval(0.15, 0.2, "t"),
            Interval(0.2, 0.3, "sil"), Interval(0.3, 0.33, "")]
    centres = pp.frame_centres(17, window=400, hop=320, sample_rate=SR)
    assert centres[:3] == pytest.approx([0.0125, 0.0325, 0.0525])  # (i * hop + window / 2) / sr
    labels = pp.frame_phones(tier, 17, window=400, hop=320, sample_rate=SR)
    # centres 0.0125 .. 0.3325: frames 0-4 in pau, 5-6 in AH (0.1125, 0.1325), 7-9 in t, then silence/end
    assert labels.tolist() == [None] * 5 + ["AH"] * 2 + ["t"] * 3 + [None] * 7
    # a centre on a boundary belongs to the interval that starts there: [start, end)
    assert pp.frame_phones(tier, 3, window=4, hop=2, sample_rate=20).tolist() == ["AH", None, None]
    assert pp.phone_label(" ER0 ") == "ER" and pp.phone_label("SPN") is None and pp.phone_label("") is None


def test_system_specs(corpus: dict[str, Path]) -> None:
    assert pp.parse_system("mfcc") == pp.SystemSpec("mfcc", "mfcc") and pp.parse_system("x=logmel").signal
    assert not pp.parse_system(f"tiny={corpus['model']}").signal
    with pytest.raises(ConfigError, match="NAME=SPEC"):
        pp.parse_system(str(corpus["model"]))
    with pytest.raises(CheckpointError, match="missing.pt.*no such checkpoint"):
        pp.parse_system("m=missing.pt")
    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        pp.parse_systems(["a=mfcc", "a=logmel"])


def test_every_layer_from_one_pass_equals_extract_features(corpus: dict[str, Path]) -> None:
    source = pp.load_source(pp.parse_system(f"tiny={corpus['model']}"), torch.device("cpu"))
    assert source.layers == [1, 2] and (source.window, source.hop) == (400, 320)
    probe = pp.select_utterances([Utterance("b-1", str(corpus["root"] / "b-1.wav"))], corpus["ali"], 5)
    frames = pp.collect_frames(source, probe, pp.load_tiers(probe, "phones"), progress=False)
    model = load_encoder(corpus["model"])
    wave = torch.from_numpy(sf.read(corpus["root"] / "b-1.wav", dtype="float32")[0])
    with torch.inference_mode():
        layers, _ = model.extract_features(wave[None])
    for layer in (1, 2):
        ref = layers[layer - 1][0].numpy()
        assert frames.layers[layer].shape == ref.shape and frames.layers[layer].dtype == np.float16
        assert np.allclose(frames.layers[layer].astype(np.float32), ref, atol=2e-2, rtol=1e-2), layer
    assert len(frames.phones) == ref.shape[0] and {"AA", "S", "M", None} == set(frames.phones.tolist())


def _run(corpus: dict[str, Path], out: Path, *extra: str) -> int:
    return cli.main(["probe-phones", "--system", "mfcc=mfcc", "--system", f"tiny={corpus['model']}",
                     "--data", str(corpus["data"]), "--alignments", str(corpus["ali"]), "--device", "cpu",
                     "--json", str(out / "p.json"), "--markdown", str(out / "p.md"), "--plot", str(out / "p.png"),
                     "--quiet", *extra])


@pytest.mark.slow
def test_cli_end_to_end(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(corpus, tmp_path, "--k", "4", "--max-utts", "2", "--seed", "0") == 0
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["utterance_ids"] == ["b-1", "c-2"]  # the first 2 by id that have a TextGrid
    assert report["missing_alignments"] == 1 and report["missing_ids"] == ["a-none"] and "a-none" not in out
    assert "1 of the 4 utterance(s)" in err
    rows = {(r["system"], r["layer"]): r for r in report["rows"]}
    assert sorted(rows) == [("mfcc", 0), ("tiny", 1), ("tiny", 2)]
    # labelled frames: 8 phones x 0.16 s of the 2 utterances; centres every 20 ms -> 8 per phone
    for row in rows.values():
        assert row["frames"] == 64 and row["phones"] == 3 and row["clusters"] <= 4
        assert 0 <= row["pnmi"] <= 1 and 1 / 3 <= row["phone_purity"] <= 1 and 1 / 4 <= row["cluster_purity"] <= 1
    assert rows[("mfcc", 0)]["pnmi"] > 0.8  # a tone, noise and another tone: MFCC k-means separates them
    assert report["systems"]["tiny"]["num_layers"] == 2 and report["settings"]["k"] == 4
    md = (tmp_path / "p.md").read_text()
    assert "| system | L0 | L1 | L2 | best (layer) | frames |" in md and "## PNMI" in md
    assert f"| mfcc | {rows[('mfcc', 0)]['pnmi']:.3f} |  |  |" in md
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = out.strip().splitlines()[-1]
    assert last.startswith("probe-phones: 2 system(s), 3 (system, layer) row(s), 2 utterance(s), 64 phone frame(s)")
    assert str(tmp_path / "p.png") in last
    # same seed, same scores
    assert _run(corpus, tmp_path / "again", "--k", "4", "--max-utts", "2", "--seed", "0") == 0
    assert json.loads((tmp_path / "again" / "p.json").read_text())["rows"] == report["rows"]


def test_cli_errors(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(corpus, tmp_path, "--tier", "syllables") == 2
    err = capsys.readouterr().err
    assert "no tier named 'syllables'" in err and "['phones', 'words']" in err and "TextGrid" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["probe-phones", "--system", "mfcc", "--data", str(corpus["data"]), "--alignments",
                     str(tmp_path / "empty"), "--quiet"]) == 2
    assert "no <utt id>.TextGrid found for any of the 4 utterances" in capsys.readouterr().err
    assert _run(corpus, tmp_path, "--k", "100000", "--max-utts", "1") == 2
    assert "--k 100000 is more than the" in capsys.readouterr().err
    assert _run(corpus, tmp_path, "--k", "0") == 2
    assert "--k must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
