"""The lm/ pipeline end to end on a toy unit set: pack, train, n-gram, score, probe, continue, results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main
from speechunits.data.corpora.zr2021 import GOLD_COLUMNS
from speechunits.units import UnitSetWriter, read_units, validate_unit_set

SR, HOP, K = 16000, 320, 8
TRAIN_OPTS = ["task.model.d_model=32", "task.model.n_layers=2", "task.model.n_heads=2", "task.model.d_ff=64",
              "task.model.dropout=0.0", "task.max_len=32", "task.batch_tokens=256", "lr=3e-3", "schedule=constant",
              "log_every=1", "tensorboard=false", "progress=false", "precision=fp32", "save_every=1000"]


def toy_units(out: Path, utts: dict[str, list[int]], codebook: str = "cb1", with_audio: bool = True) -> Path:
    """A syllable unit set whose token k spans frames [6k, 6k+5) (a gap of one frame between tokens)."""
    wav_dir = out.parent / f"{out.name}_wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    producer = {"codebook": {"hash": codebook, "k": K, "path": "/x/km.pt"}, "segmenter": "toy"}
    with UnitSetWriter(out, kind="syllable", sample_rate=SR, hop=HOP, vocab_size=K + 1, producer=producer,
                       special_ids={"silence": K}, audio_root=str(wav_dir)) as w:
        for utt, units in utts.items():
            n = len(units) * 6 * HOP
            if with_audio:
                sf.write(wav_dir / f"{utt}.wav", 0.1 * np.sin(np.arange(n) / 7.0), SR)
            w.add(id=utt, audio=f"{utt}.wav", num_samples=n, sample_rate=SR, starts=[6 * k for k in range(len(units))],
                  ends=[6 * k + 5 for k in range(len(units))], units=units, speaker="spk")
    return out


def toy_language(n: int, seed: int) -> dict[str, list[int]]:
    """Counting sentences: each token is the previous plus one (mod K), 4-12 tokens."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        start, length = int(rng.integers(0, K)), int(rng.integers(4, 13))
        out[f"u{seed}_{i:03d}"] = [(start + j) % K for j in range(length)]
    return out


def write_gold(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """A lexical gold.csv: pair i is (correct file, incorrect file), one voice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=GOLD_COLUMNS["lexical"])
        w.writeheader()
        for i, (good, bad) in enumerate(pairs):
            for name, correct in ((good, 1), (bad, 0)):
                w.writerow({"id": str(i), "filename": name, "word": name, "phones": "x", "length": 1,
                            "frequency": 1, "correct": correct, "voice": "v"})
    return path


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lm/run.sh's layout for one tokenizer ``toy``: units, packed sets, LM, n-gram, scores, probe."""
    exp = tmp_path_factory.mktemp("lm_exp")
    units = exp / "units" / "toy"
    sets = {"train": toy_language(60, 0), "test": toy_language(10, 1)}
    # probes: a counting sequence against the same tokens shuffled out of order
    rng = np.random.default_rng(2)
    probe, pairs = {}, []
    for i in range(12):
        seq = [(i + j) % K for j in range(6)]
        probe[f"p{i:02d}good"], probe[f"p{i:02d}bad"] = seq, list(rng.permutation(seq))
        pairs.append((f"p{i:02d}good", f"p{i:02d}bad"))
    sets["lexical"] = probe
    gold = write_gold(exp / "gold.csv", pairs)
    packed = exp / "toy" / "packed"
    for name, utts in sets.items():
        toy_units(units / name, utts)
        assert main(["lm-pack", "--units", str(units / name), "--out", str(packed / name), "--dedup", "false"]) == 0
    assert main(["train-lm", "--out-dir", str(exp / "toy" / "lm"), "--device", "cpu", "--token-budget", "6000",
                 f"task.train={packed / 'train'}", f"task.valid={packed / 'test'}", *TRAIN_OPTS]) == 0
    assert main(["lm-ngram", "--train", str(packed / "train"), "--out", str(exp / "toy" / "ngram.json")]) == 0
    for model, file in (("lm", exp / "toy" / "lm" / "model.pt"), ("ngram", exp / "toy" / "ngram.json")):
        for name in ("test", "lexical"):
            assert main(["lm-score", "--model", str(file), "--data", str(packed / name),
                         "--out", str(exp / "toy" / "scores" / model / name), "--device", "cpu"]) == 0
        assert main(["lm-probe", "--gold", str(gold), "--task", "lexical",
                     "--scores", str(exp / "toy" / "scores" / model / "lexical" / "scores.jsonl"),
                     "--out", str(exp / "toy" / "probes" / f"{model}.lexical.json")]) == 0
    return exp


def test_token_budget_sets_the_steps_and_the_lm_learns_the_toy_language(experiment):
    rows = [json.loads(x) for x in (experiment / "toy" / "lm" / "metrics.jsonl").read_text().splitlines()]
    steps = max(r["step"] for r in rows)
    seen = sum(r.get("train/items_per_s", 0) for r in rows)  # logged every step: a positive throughput
    assert 20 <= steps <= 80 and seen > 0  # 6000 tokens at ~150 real tokens per 256-token batch
    lm = json.loads((experiment / "toy" / "scores" / "lm" / "test" / "summary.json").read_text())
    assert lm["ppl_per_token"] < (K + 1) / 2  # far below the uniform distribution over the ids and EOS
    report = json.loads((experiment / "toy" / "probes" / "lm.lexical.json").read_text())
    assert report["accuracy"] > 0.9 and report["ci_low"] > 0.5


def test_results_table_has_every_column_and_the_paired_verdict(experiment, capsys):
    assert main(["lm-results", "--exp-dir", str(experiment), "--tokenizers", "toy missing", "--train-set", "train",
                 "--test-sets", "test", "--token-budget", "6000"]) == 0
    text = (experiment / "RESULTS.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| toy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 12 and cells[8:10] == ["-", "-"], cells  # no syntactic probes in this toy run
    assert all(c != "-" for c in cells[:8] + cells[10:]), cells
    assert float(cells[1]) == pytest.approx(1 / (6 * HOP / SR), rel=1e-3)  # one token per 6 frames of audio
    missing = next(line for line in text.splitlines() if line.startswith("| missing |"))
    assert missing.count("| - ") >= 10  # a tokenizer without outputs gives an empty row, not an error
    assert "| toy | test | 8.33 |" in text  # the per-set table
    assert "**toy**, lexical: the LM beats chance" in text and "paired over the same 12 items" in text
    rows = json.loads((experiment / "RESULTS.json").read_text())
    assert rows[0]["paired"]["lexical"]["n_ids"] == 12


def test_continuation_extends_the_prompt_and_keeps_its_audio(experiment, tmp_path):
    units = experiment / "units" / "toy" / "test"
    out = tmp_path / "cont"
    assert main(["lm-continue", "--model", str(experiment / "toy" / "lm" / "model.pt"), "--units", str(units),
                 "--out", str(out), "--num-utts", "3", "--prompt-seconds", "0.5", "--max-new-tokens", "4",
                 "--temperature", "0", "--device", "cpu"]) == 0
    assert validate_unit_set(out / "units").num_utterances == 6  # raises on any format violation
    recs = {r.id: r for r in read_units(out / "units")}
    originals = {r.id: r for r in read_units(units)}
    listing = [json.loads(x) for x in (out / "continuations.jsonl").read_text().splitlines()]
    assert len(listing) == 3 and len(recs) == 6
    for item in listing:
        prompt, cont = recs[f"{item['id']}.prompt"], recs[f"{item['id']}.continued"]
        kept = sum(1 for e in originals[item["id"]].ends if e <= 25)  # 0.5 s = 25 frames
        assert prompt.units == originals[item["id"]].units[:kept] == item["prompt_units"]
        assert cont.units == prompt.units + item["new_units"] and 1 <= len(item["new_units"]) <= 4
        # greedy continuation of a counting language counts on
        assert item["new_units"][0] == (prompt.units[-1] + 1) % K
        wav, sr = sf.read(out / "prompts" / f"{item['id']}.wav")
        assert sr == SR and len(wav) == prompt.ends[-1] * HOP
    # the results page summarises it and draws the prompts (no vocoder output here: real prompts only)
    assert main(["lm-results", "--exp-dir", str(tmp_path), "--tokenizers", "toy", "--train-set", "train",
                 "--test-sets", "test", "--continuation", str(out), "--figure-utts", "2"]) == 0
    assert "3 prompts of" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "continuation.png").stat().st_size > 1000


def test_continuation_refuses_prompts_of_another_tokenizer(experiment, tmp_path, capsys):
    other = toy_units(tmp_path / "other", toy_language(3, 5), codebook="cb2")
    code = main(["lm-continue", "--model", str(experiment / "toy" / "lm" / "model.pt"), "--units", str(other),
                 "--out", str(tmp_path / "c"), "--device", "cpu"])
    assert code == 2 and "meta hash" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
