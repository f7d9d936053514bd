"""Unit LM training on the shared Trainer, resume, DDP, the model file, lm-score and sampling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.cli import main as cli_main
from speechunits.errors import CheckpointError, ConfigError
from speechunits.lm.model import UnitLM, UnitLMConfig
from speechunits.lm.model_io import load_lm
from speechunits.lm.packed import PackedTokens, write_packed
from speechunits.lm.sampling import filter_logprobs, sample
from speechunits.lm.scoring import corpus_summary, load_scorer, score_packed
from speechunits.lm.task import LMTask, TokenBatches
from speechunits.train import Trainer, load_config, seed_everything
from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint
from speechunits.train.distributed import DistInfo
from speechunits.train.logger import read_metrics

REPO = Path(__file__).resolve().parents[1]
V = 6


def _producer(unit_hash: str = "h1", dedup: bool = True) -> dict:
    return {"unit_set": "toy", "unit_set_hash": unit_hash, "kind": "syllable", "frame_rate_hz": 50.0,
            "dedup": dedup, "bpe": None, "unit_vocab_size": V}


def make_packed(prefix: Path, n: int = 40, seed: int = 0, **producer) -> Path:
    """A learnable toy language: t_{i+1} = (t_i + 1) mod V mostly, with lengths 3..30."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        length = int(rng.integers(3, 31))
        s = (int(rng.integers(0, V)) + np.arange(length)) % V
        noise = rng.random(length) < 0.05
        s[noise] = rng.integers(0, V, int(noise.sum()))
        seqs.append(s)
    write_packed(prefix, [f"utt{i:03d}" for i in range(n)], seqs, [len(s) * 0.2 for s in seqs], vocab_size=V,
                 producer=_producer(**producer))
    return prefix


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lm_data")
    return {"train": make_packed(d / "train"), "valid": make_packed(d / "valid", n=10, seed=1),
            "other": make_packed(d / "other", n=5, seed=2, unit_hash="h2")}


def tiny_options(*extra: str) -> list[str]:
    return ["task.model.d_model=32", "task.model.n_layers=2", "task.model.n_heads=2", "task.model.d_ff=64",
            "task.model.dropout=0.0", "task.max_len=16", "task.batch_tokens=128", "lr=3e-3", "schedule=constant",
            "weight_decay=0.0", "max_steps=4", "log_every=1", "tensorboard=false", "progress=false",
            "precision=fp32", *extra]


def _train(out_dir: Path, data: dict[str, Path], *extra: str) -> Trainer:
    c = load_config(overrides=[*tiny_options(f"task.train={data['train']}", f"task.valid={data['valid']}", *extra),
                               f"out_dir={out_dir}"])
    seed_everything(c.seed)
    trainer = Trainer(LMTask(c), c)
    trainer.fit()
    return trainer


def test_a_few_steps_lower_the_loss_and_validation_reports_ppl(data, tmp_path):
    _train(tmp_path / "run", data, "max_steps=25")
    rows = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert len(rows) == 25
    first, last = np.mean([r["train/loss"] for r in rows[:3]]), np.mean([r["train/loss"] for r in rows[-3:]])
    assert first > np.log(V + 1) - 0.3 and last < first - 0.5, (first, last)
    valid = [r for r in read_metrics(tmp_path / "run") if "valid/ppl" in r][-1]
    assert valid["valid/ppl"] == pytest.approx(np.exp(valid["valid/nll_per_token"]))
    assert valid["valid/ppl"] < V + 1 and valid["valid/bits_per_second"] > 0


def test_resume_is_bitwise_identical(data, tmp_path):
    ref = _train(tmp_path / "A", data, "save_every=2")
    _train(tmp_path / "B", data, "save_every=2", "stop_after=2")
    resumed = _train(tmp_path / "B", data, "save_every=2")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_00000002.pt"
    sa, sb = ref.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_token_batches_are_deterministic_within_budget_and_equal_per_rank():
    lengths = np.random.default_rng(0).integers(1, 60, 101)
    ranks = [TokenBatches(lengths, 32, 96, DistInfo(rank=r, world_size=2), seed=5) for r in range(2)]
    a0, a1 = ranks[0].epoch(0), ranks[1].epoch(0)
    assert a0 == ranks[0].epoch(0) and a0 != ranks[0].epoch(1)  # a function of (seed, epoch, rank)
    assert len(a0) == len(a1) and not {i for b in a0 for i, _ in b} & {i for b in a1 for i, _ in b}
    for batch in a0 + a1:
        widths = [min(int(lengths[i]) + 1, 32) for i, _ in batch]
        assert max(widths) * len(batch) <= 96
        assert all(0 <= off <= int(lengths[i]) + 1 - w for (i, off), w in zip(batch, widths))
    assert any(off > 0 for b in a0 for _, off in b)  # long sequences get windows at varying offsets


def test_long_sequences_are_cut_to_windows_of_max_len(data, tmp_path):
    c = load_config(overrides=tiny_options(f"task.train={data['train']}", "task.max_len=8", "task.batch_tokens=16"))
    task = LMTask(c)
    for batch in task.batches(0):
        assert batch["tokens"].shape[1] <= 8 and batch["num_tokens"] == int((batch["targets"] != -100).sum())
        assert batch["tokens"].shape[0] * batch["tokens"].shape[1] <= 16


def test_train_and_valid_from_different_unit_sets_are_refused(data):
    c = load_config(overrides=tiny_options(f"task.train={data['train']}", f"task.valid={data['other']}"))
    with pytest.raises(ConfigError, match="task.valid"):
        LMTask(c)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_ddp_two_ranks_train_one_model(data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "speechunits",
           "train-lm", "--out-dir", str(tmp_path / "ddp"), "--device", "cpu",
           *tiny_options(f"task.train={data['train']}", f"task.valid={data['valid']}", "max_steps=3", "save_every=3")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = load_checkpoint(latest_checkpoint(tmp_path / "ddp"))
    assert state["world_size"] == 2 and state["step"] == 3
    model, info = load_lm(tmp_path / "ddp" / "model.pt")
    assert info.step == 3 and info.producer["unit_set_hash"] == "h1" and model.cfg.vocab_size == V + 2


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm_model")
    assert cli_main(["train-lm", "--out-dir", str(out), "--device", "cpu",
                     *tiny_options(f"task.train={data['train']}", "max_steps=3")]) == 0
    return out / "model.pt"


def test_truncated_model_file_is_a_clear_error(trained, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(trained.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_lm(bad)


def test_lm_score_writes_scores_summary_and_zerospeech_lines(trained, data, tmp_path):
    assert cli_main(["lm-score", "--model", str(trained), "--data", str(data["valid"]), "--out", str(tmp_path / "s"),
                     "--batch-tokens", "64"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "s" / "scores.jsonl").read_text().splitlines()]
    packed = PackedTokens(data["valid"])
    assert [r["id"] for r in rows] == packed.ids
    assert all(r["num_predictions"] == len(packed[i]) + 1 and r["sum_logprob"] < 0 for i, r in enumerate(rows))
    assert rows[0]["mean_logprob"] == pytest.approx(rows[0]["sum_logprob"] / rows[0]["num_predictions"])
    zs = (tmp_path / "s" / "zerospeech.txt").read_text().splitlines()
    assert zs[0].split()[0] == "utt000" and float(zs[0].split()[1]) == pytest.approx(rows[0]["sum_logprob"], abs=1e-5)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    direct = corpus_summary(score_packed(load_scorer(trained), packed))
    assert summary["nll_per_token"] == pytest.approx(direct["nll_per_token"])
    nll = -sum(r["sum_logprob"] for r in rows)
    assert summary["bits_per_second"] == pytest.approx(nll / packed.audio_seconds / np.log(2), rel=1e-4)
    assert summary["ppl_per_second"] == pytest.approx(np.exp(nll / packed.audio_seconds), rel=1e-4)


def test_lm_score_refuses_data_from_another_unit_set(trained, data, tmp_path, capsys):
    code = cli_main(["lm-score", "--model", str(trained), "--data", str(data["other"]), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "unit_set_hash" in err and str(data["other"]) in err
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- sampling
def test_top_k_and_top_p_keep_the_expected_outcomes():
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    logp = p.log()
    kept = lambda lp: set(torch.nonzero(torch.isfinite(lp)).flatten().tolist())  # noqa: E731
    assert kept(filter_logprobs(logp, top_k=2)) == {0, 1}
    assert kept(filter_logprobs(logp, top_p=0.5)) == {0}  # 0.5 already reaches 0.5
    assert kept(filter_logprobs(logp, top_p=0.6)) == {0, 1}
    assert kept(filter_logprobs(logp, top_p=0.86)) == {0, 1, 2, 3}
    assert kept(filter_logprobs(logp, top_p=0.01)) == {0}
    out = filter_logprobs(logp, top_k=3)
    assert torch.allclose(out.exp()[:3], p[:3] / p[:3].sum())  # renormalised


class _FixedLM(torch.nn.Module):
    """Next-token logits independent of the context: handmade distributions for the sampler."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.cfg = UnitLMConfig(vocab_size=len(probs), d_model=2, n_heads=1, n_layers=1, d_ff=2, max_len=8)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.logits = torch.tensor(probs).clamp_min(1e-12).log()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*tokens.shape, -1).clone()


def test_sampling_greedy_temperature_and_eos():
    # ids 0..3, BOS (index 4, must never come out), EOS (index 5)
    model = _FixedLM([0.1, 0.6, 0.05, 0.05, 0.1, 0.1])
    greedy = sample(model, [np.array([0, 2]), np.array([3])], 5, temperature=0)
    assert all(np.array_equal(g, [1] * 5) for g in greedy)
    g = torch.Generator().manual_seed(0)
    draws = sample(model, [np.array([0])] * 200, 3, temperature=1.0, generator=g)
    flat = np.concatenate(draws)
    assert flat.max() < 4  # never BOS or EOS ids
    assert any(len(d) < 3 for d in draws)  # EOS stopped some sequences
    no_stop = sample(model, [np.array([0])] * 50, 4, generator=torch.Generator().manual_seed(0), stop_at_eos=False)
    assert all(len(d) == 4 for d in no_stop)
    top1 = sample(model, [np.array([0])] * 20, 3, top_k=1, generator=torch.Generator().manual_seed(1))
    assert all(np.array_equal(d, [1, 1, 1]) for d in top1)
    a = sample(model, [np.array([0])] * 10, 6, generator=torch.Generator().manual_seed(7))
    b = sample(model, [np.array([0])] * 10, 6, generator=torch.Generator().manual_seed(7))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="prompt 0"):
        sample(model, [np.array([4])], 1)


def test_trained_model_samples_its_toy_language(data, tmp_path):
    trainer = _train(tmp_path / "run", data, "max_steps=40")
    model: UnitLM = trainer.model  # type: ignore[assignment]
    out = sample(model, [np.array([2, 3])], 6, temperature=0)[0]
    assert len(out) >= 3 and np.array_equal(out[:3], [4, 5, 0])  # (t + 1) mod V continues the prompt


def test_best_validation_step_is_exported_and_survives_resume(data, tmp_path):
    """model.best.pt holds the step of the lowest valid NLL so far; a resumed run keeps that record."""
    opts = ("validate_every=2", "save_every=2", "lr=0.05", "max_steps=6")  # valid NLL: step 4 < step 6 < step 2
    _train(tmp_path / "run", data, *opts, "stop_after=4")
    _train(tmp_path / "run", data, *opts)
    rows = [r for r in read_metrics(tmp_path / "run") if "valid/nll_per_token" in r]
    by_step = {r["step"]: r["valid/nll_per_token"] for r in rows}
    best = min(by_step, key=by_step.get)
    _, info = load_lm(tmp_path / "run" / "model.best.pt")
    assert best == 4 and by_step[6] > by_step[4]  # the resumed run's first validation is no new best ...
    assert info.step == best and rows[-1]["valid/best_step"] == best  # ... because the record was resumed
