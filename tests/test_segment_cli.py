"""``speechunits segment``: stdout/dir outputs in json/tsv, --plot PNG, bad audio -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.audio import write_audio
from speechunits.cli import main
from speechunits.encoders.checkpoints import save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder

SR = 16000


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("segcli")
    torch.manual_seed(0)
    model = SpeechEncoder(EncoderConfig.tiny())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.5)
    save_encoder(d / "model.pt", model)
    rng = np.random.default_rng(0)
    out = {"model": d / "model.pt"}
    for i, secs in enumerate([1.2, 0.7]):
        t = np.arange(int(secs * SR)) / SR
        wav = 0.3 * np.sin(2 * np.pi * (120 + 80 * i) * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * rng.standard_normal(len(t))
        out[f"wav{i}"] = d / f"utt{i}.wav"
        write_audio(out[f"wav{i}"], wav.astype(np.float32), SR)
    out["bad"] = d / "broken.wav"
    out["bad"].write_bytes(b"not audio at all")
    return out


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["segment", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_json_to_stdout(assets: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run([assets["wav0"], assets["wav1"], "--model", assets["model"], "--device", "cpu",
                       "--norm-threshold", "0"], capsys)
    assert rc == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(x["file"]).name for x in lines] == ["utt0.wav", "utt1.wav"]
    for x in lines:
        assert x["frame_rate"] == 50.0 and x["sample_rate"] == SR and len(x["segments"]) >= 1
        np.testing.assert_allclose(np.array(x["segments"]), np.array(x["frames"]) / 50.0)
        assert all(s < e for s, e in x["segments"])
    assert lines[0]["num_samples"] == int(1.2 * SR)


def test_tsv_to_directory(assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run([assets["wav0"], "--model", assets["model"], "--device", "cpu", "--format", "tsv",
                       "--out", tmp_path / "segs", "--norm-threshold", "0"], capsys)
    assert rc == 0 and out == ""
    rows = [line.split("\t") for line in (tmp_path / "segs" / "utt0.tsv").read_text().splitlines()]
    assert rows and all(len(r) == 3 and float(r[1]) < float(r[2]) for r in rows)


def test_plot_png(assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "fig" / "seg.png"
    rc, _, _ = _run([assets["wav0"], "--model", assets["model"], "--device", "cpu", "--plot", png,
                     "--norm-threshold", "0"], capsys)
    assert rc == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 500 and float(img[..., :3].std()) > 0.05
    assert not [p for p in png.parent.iterdir() if p.name != "seg.png"]  # written atomically


def test_bad_audio_exit_2(assets: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run([assets["bad"], assets["wav1"], "--model", assets["model"], "--device", "cpu"], capsys)
    assert rc == 2
    assert "broken.wav" in err and "error:" in err
    assert [Path(json.loads(line)["file"]).name for line in out.splitlines()] == ["utt1.wav"]


def test_usage_errors(assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run([assets["wav0"], assets["wav1"], "--model", assets["model"], "--device", "cpu",
                       "--plot", tmp_path / "x.png"], capsys)
    assert rc == 2 and "--plot" in err
    rc, _, err = _run([assets["wav0"], "--model", tmp_path / "nope.pt", "--device", "cpu"], capsys)
    assert rc == 2 and "nope.pt" in err
