"""RESULTS.md tables and plots from eval-boundaries reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechunits.cli import main


def report(f1: float, **extra: object) -> dict:
    return {"boundaries": {"precision": f1 + 1, "recall": f1 - 1, "f1": f1, "r_value": f1 + 2},
            "tokens_per_second": 4.2, "ref_tokens_per_second": 4.4, "shift": -0.01, "utterances": 7,
            "tolerance": 0.05, "tier": "syllables", "units": "u", "shift_tuned_on": None, **extra}


def test_table_and_plot(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report(70.0)))
    b.write_text(json.dumps(report(75.5, purity={"syllable_purity": 50.0, "cluster_purity": 40.0})))
    out = tmp_path / "RESULTS.md"
    assert main(["results-table", "--out", str(out), "--plot", str(tmp_path / "p.png"), f"boot={a}", f"sylber={b}"]) == 0
    text = out.read_text()
    assert "| boot | 71.0 | 69.0 | 70.0 | 72.0 | 4.20 | 4.40 | -10 | 7 |  |  |" in text
    assert "| sylber | 76.5 | 74.5 | 75.5 | 77.5 | 4.20 | 4.40 | -10 | 7 | 50.0 | 40.0 |" in text
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_bad_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["results-table", "--out", str(tmp_path / "R.md"), f"x={tmp_path / 'bad.json'}"]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert main(["results-table", "--out", str(tmp_path / "R.md"), "nonameequals"]) == 2
    assert not (tmp_path / "R.md").exists()
