"""The device smoke script (``python -m speechunits.train.smoke``) on the CPU: fp32 cases, and compile (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from speechunits.train.smoke import compare_states, main


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    return {(cols[0], cols[1]): cols[2:] for cols in (line.split() for line in out.splitlines()) if len(cols) > 2 and cols[0] in ("toy", "gan")}


def test_smoke_fp32_resume_is_bitwise_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cpu", "--settings", "fp32,bf16", "--steps", "12", "--stop", "5"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[("toy", "fp32")] == ["true", "0", "0", "ok"] and rows[("gan", "fp32")] == ["true", "0", "0", "ok"]
    assert "skipped:" in rows[("toy", "bf16")] and "skipped:" in rows[("gan", "bf16")]
    assert not torch.are_deterministic_algorithms_enabled()  # restored for the rest of the process


def test_smoke_fails_when_resume_is_not_exact(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("speechunits.train.loop.restore_rng_state", lambda state: None)  # resume forgets the RNG
    assert main(["--device", "cpu", "--tasks", "toy", "--settings", "fp32", "--steps", "8", "--stop", "3"]) == 1
    (row,) = _rows(capsys.readouterr().out).values()
    assert row[0] == "false" and float(row[1]) > 0 and row[-1] == "FAILED"


def test_compare_states() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "opt": [{"step": torch.tensor(3)}], "name": "x"}
    assert compare_states(a, a) == (True, 0.0)
    assert compare_states(a, {**a, "w": torch.tensor([1.0, 2.5])}) == (False, 0.5)
    assert compare_states(a, {**a, "opt": [{"step": torch.tensor(4)}]}) == (False, math.inf)
    assert compare_states(a, {"w": a["w"]}) == (False, math.inf)


@pytest.mark.slow
def test_smoke_compile_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cpu", "--settings", "compile", "--steps", "12", "--stop", "5"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[("toy", "compile")][-1] == "ok" and rows[("gan", "compile")][-1] == "ok"
