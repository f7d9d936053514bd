"""``speechunits slu-cil`` under torchrun (2 CPU ranks, gloo): a 2-task coconut_kd run with a
herding memory finishes, the ranks agree on the training examples, the rehearsal memory
(herding selection) and the seq-KD teacher hypotheses (checked inside the protocol, which
raises otherwise), and rank 0 alone writes files. About 7 s on 2 CPU cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slu_tones import write_tone_slu_data

from speechunits.errors import InternalError
from speechunits.train import distributed as D

REPO = Path(__file__).resolve().parents[1]


def test_ranks_that_disagree_are_named(monkeypatch) -> None:
    D.assert_same_on_ranks({"a": [1, 2]}, "the memory")  # a plain process: nothing to compare
    monkeypatch.setattr(D, "all_gather_object", lambda obj: [obj, "another hash"])
    with pytest.raises(InternalError, match=r"ranks disagree on the memory \(rank 0: \w+, rank 1: anot"):
        D.assert_same_on_ranks({"a": [1, 2]}, "the memory")


def test_torchrun_two_ranks_coconut_kd(tmp_path: Path) -> None:
    data = write_tone_slu_data(tmp_path / "data")
    exp, writes = tmp_path / "exp", tmp_path / "writes"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
           "SLU_DDP_WATCH": str(exp), "SLU_DDP_WRITES": str(writes)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(REPO / "tests" / "slu_ddp_worker.py"),
           "--config", str(data / "conf.yaml"), "--data-dir", str(data), "--out-dir", str(exp), "--method", "coconut_kd",
           "--device", "cpu", "--threads", "1", "epochs_per_task=1", "batch_size=4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # the protocol compared the ranks' state before each task (it raises when they differ)
    assert "task 0: 2 ranks agree on 11 examples, 0 memory items, 0 teacher hypotheses" in done.stderr
    assert "task 1: 2 ranks agree on 11 examples, 4 memory items, 4 teacher hypotheses" in done.stderr
    (task1,) = exp.glob("**/task1/result.json")
    r0 = json.loads((task1.parent.parent / "task0" / "result.json").read_text())
    assert r0["memory"]["selection"] == "herding"
    assert r0["memory_counts"] == {"activate_lights_none": 2, "change-language_German_none": 2}
    log = [json.loads(line) for line in (task1.parent / "metrics.jsonl").read_text().splitlines()]
    assert any("train/kd" in rec for rec in log)
    assert len(list(exp.glob("**/results.json"))) == 1

    # rank 0 alone wrote (split.json, tokenizer, checkpoints, logs, results); rank 1 nothing
    rank0 = json.loads((writes / "rank0.json").read_text())
    rank1 = json.loads((writes / "rank1.json").read_text())
    assert any("split.json" in w for w in rank0) and any("result.json" in w for w in rank0)
    assert rank1 == []
