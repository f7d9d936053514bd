"""slu-cil on unit sets: the tiny 2-task tone protocol of ``test_slu_protocol`` with the
``units`` encoder reading quantized unit sets (one per data set under ``units_dir``)
written by the ``speechunits.units`` writer; config checks and clear errors for a missing
utterance or an unquantized set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.data.jsonl import load_manifest as load_kaldi_dir
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.slu import protocol as P
from speechunits.slu.config import load_cil_config
from speechunits.slu.data import SLUExample
from speechunits.slu.encoders import UnitSetEncoder
from speechunits.slu.inputs import UnitSetSource
from speechunits.units.writer import UnitSetWriter
from slu_tones import CLASSES, CONFIG, write_split

torch.set_num_threads(1)

VOCAB = 12
UNITS_ENCODER = "{type: units, units_dir: %s, use_durations: true, d_model: 32, num_layers: 1, num_heads: 4, ffn_dim: 64, dropout: 0.0}"


def _write_units(units_dir, data_dir, name: str, seed: int, drop: str | None = None, quantized: bool = True) -> None:
    """A unit set of data set ``name``: per class, ids around a class-specific unit."""
    rng = np.random.default_rng(seed)
    base = {label: 3 * i for i, label in enumerate(CLASSES)}
    with UnitSetWriter(units_dir / name, kind="syllable", sample_rate=16000, hop=320, vocab_size=VOCAB if quantized else None) as w:
        for utt in sorted(load_kaldi_dir(data_dir / name), key=lambda u: u.id):
            if utt.id == drop:
                continue
            n = int(rng.integers(3, 7))
            ends = np.cumsum(rng.integers(1, 4, size=n)).tolist()
            starts = [0] + ends[:-1]
            units = [(base[utt.extra["intent"]] + int(rng.integers(0, 3))) % VOCAB for _ in range(n)] if quantized else None
            w.add(id=utt.id, audio=utt.audio, num_samples=ends[-1] * 320, sample_rate=16000, starts=starts, ends=ends, units=units)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("slu_units")
    write_split(root, "train", {k: v[2] for k, v in CLASSES.items()}, 0)
    write_split(root, "valid", {k: 1 for k in CLASSES}, 1)
    write_split(root, "test", {k: 2 for k in CLASSES}, 2)
    for seed, name in enumerate(("train", "valid", "test")):
        _write_units(root / "units", root, name, seed)
    (root / "conf.yaml").write_text(CONFIG.replace(CONFIG.split("encoder: ")[1].split("\n")[0], UNITS_ENCODER % (root / "units")))
    return root


def test_units_config_checks(data_dir, tmp_path) -> None:
    cfg = load_cil_config(data_dir / "conf.yaml")
    assert cfg.model.encoder["type"] == "units"
    with pytest.raises(ConfigError, match="needs model.encoder.units_dir"):
        load_cil_config(data_dir / "conf.yaml", ["model.encoder.units_dir=null"])
    with pytest.raises(ConfigError, match="units_dir=.*not a directory"):
        load_cil_config(data_dir / "conf.yaml", [f"model.encoder.units_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="vocab_size.*meta.json"):
        load_cil_config(data_dir / "conf.yaml", ["model.encoder.vocab_size=5"])


def test_unit_source_pads_ids_and_durations(data_dir) -> None:
    src = UnitSetSource(data_dir / "units", ["train", "valid", "test"])
    assert src.vocab_size == VOCAB and src.encoder_kwargs() == {"vocab_size": VOCAB, "pad_id": VOCAB}
    utts = sorted(load_kaldi_dir(data_dir / "test"), key=lambda u: u.id)[:3]
    exs = [SLUExample(u.id, u.audio, u.text or "", "x") for u in utts]
    inputs, lens = src.pad(exs)
    assert inputs.shape == (3, int(lens.max()), 2) and inputs.dtype == torch.long
    assert lens.tolist() == [src.length(ex) for ex in exs]
    short = int(lens.argmin())
    assert (inputs[short, lens[short]:, 0] == VOCAB).all() and (inputs[short, lens[short]:, 1] == 0).all()
    assert (inputs[short, : lens[short], 1] > 0).all()
    enc = UnitSetEncoder(VOCAB, d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0, pad_id=VOCAB).eval()
    feats, out_lens = enc(inputs, lens)
    assert feats.shape == (3, inputs.size(1), 16) and out_lens.tolist() == lens.tolist()
    alone, _ = enc(inputs[short : short + 1, : lens[short]], lens[short : short + 1])
    torch.testing.assert_close(alone[0], feats[short, : lens[short]], atol=1e-5, rtol=1e-5)


def test_protocol_on_unit_sets(data_dir, tmp_path) -> None:
    cfg = load_cil_config(data_dir / "conf.yaml", ["epochs_per_task=1"])
    res = P.run_protocol(cfg, "coconut_kd", data_dir, tmp_path, device="cpu")[0]
    assert len(res["accuracy_matrix"]) == 2
    found = list(tmp_path.rglob("results.json"))
    assert len(found) == 1 and json.loads(found[0].read_text())["num_tasks"] == 2
    task1 = [p for p in tmp_path.rglob("metrics.jsonl") if p.parent.name == "task1"]
    log = [json.loads(line) for line in task1[0].read_text().splitlines()]
    assert any("train/nspt" in rec for rec in log) and any("train/kd" in rec for rec in log)


def test_missing_utterance_and_unquantized_set(data_dir, tmp_path) -> None:
    bad = tmp_path / "units"
    shutil.copytree(data_dir / "units", bad)
    shutil.rmtree(bad / "test")
    victim = sorted(u.id for u in load_kaldi_dir(data_dir / "test"))[1]
    _write_units(bad, data_dir, "test", 2, drop=victim)
    cfg = load_cil_config(data_dir / "conf.yaml", [f"model.encoder.units_dir={bad}"])
    with pytest.raises(UnitFormatError, match=f"utterance '{victim}'.*unit sets train, valid, test under {bad}"):
        P.run_protocol(cfg, "coconut_kd", data_dir, tmp_path / "exp", device="cpu")
    shutil.rmtree(bad / "valid")
    _write_units(bad, data_dir, "valid", 1, quantized=False)
    with pytest.raises(UnitFormatError, match="valid/meta.json.*not quantized"):
        UnitSetSource(bad, ["train", "valid", "test"]).vocab_size
    shutil.rmtree(bad / "valid")
    with pytest.raises(UnitFormatError, match="no unit set for data set 'valid'"):
        UnitSetSource(bad, ["train", "valid", "test"]).vocab_size


def test_units_recipe_skips_complete_sets(data_dir, tmp_path) -> None:
    """recipes/slu_units.sh leaves complete (quantized) unit sets alone and, when some are
    missing, asks for the Sylber model and codebook size that make them."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = Path(__file__).resolve().parents[1] / "recipes" / "slu_units.sh"
    ok = subprocess.run(["bash", str(script), "--units-dir", str(data_dir / "units"), "--data-root", str(data_dir)],
                        capture_output=True, text=True, check=False, env=env)
    assert ok.returncode == 0 and "not remade" in ok.stdout, ok.stderr
    partial = tmp_path / "units"
    shutil.copytree(data_dir / "units" / "train", partial / "train")
    bad = subprocess.run(["bash", str(script), "--units-dir", str(partial), "--data-root", str(data_dir)],
                         capture_output=True, text=True, check=False, env=env)
    assert bad.returncode == 1 and "--sylber-model" in bad.stderr and "--num-clusters" in bad.stderr


def test_units_tiny_config_differs_from_the_audio_one_in_the_encoder_only() -> None:
    """The FSC-6 row on Sylber tokens compares input only: every other setting is the same."""
    from speechunits.slu.config import config_dict

    conf = Path(__file__).resolve().parents[1] / "egs" / "synth" / "conf"
    audio = config_dict(load_cil_config(conf / "slu_cil_tiny.yaml"))
    units = config_dict(load_cil_config(conf / "slu_cil_units_tiny.yaml", ["model.encoder.units_dir=/"]))
    assert audio["model"].pop("encoder")["type"] == "mel_conformer" and units["model"].pop("encoder")["type"] == "units"
    assert audio == units


@pytest.mark.slow
def test_units_recipe_makes_unit_sets_with_a_sylber_model(data_dir, tmp_path) -> None:
    """recipes/slu_units.sh end to end: speechunits tokenize with a (tiny, random) Sylber
    checkpoint, k-means on the training set, quantize every set; slu-cil then trains on them."""
    from speechunits.encoders.checkpoints import save_encoder
    from synthetic_inputs import randomised_tiny_model

    save_encoder(tmp_path / "sylber.pt", randomised_tiny_model())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = Path(__file__).resolve().parents[1] / "recipes" / "slu_units.sh"
    units = tmp_path / "units"
    proc = subprocess.run(["bash", str(script), "--units-dir", str(units), "--data-root", str(data_dir),
                           "--sylber-model", str(tmp_path / "sylber.pt"), "--num-clusters", "4",
                           "--tokenize-opts", "--norm-threshold 0 --merge-threshold 0.9"],
                          capture_output=True, text=True, check=False, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("train", "valid", "test"):
        meta = json.loads((units / name / "meta.json").read_text())
        assert meta["vocab_size"] == 4 + 1, meta  # k cluster ids + the silence id
    cfg = load_cil_config(data_dir / "conf.yaml", [f"model.encoder.units_dir={units}", "epochs_per_task=1"])
    res = P.run_protocol(cfg, "er", data_dir, tmp_path / "exp", device="cpu")[0]
    assert len(res["accuracy_matrix"]) == 2 and res["settings"]["memory"]["selection"] == "herding"
