"""Minimal-pair probes: generation rules, the ZeroSpeech 2021 reader, pair accuracy and lm-probe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.cli import COMMANDS, main
from speechunits.data.corpora import CORPORA
from speechunits.data.corpora.zr2021 import GOLD_COLUMNS, GoldItem, load_zr2021, read_gold
from speechunits.data.synth.probes import (
    COMMON_WORDS,
    SYNTACTIC_TYPES,
    differs_by_one_consonant,
    is_vowel,
    lexical_pairs,
    nonword_candidates,
    syntactic_pairs,
    vocabulary_words,
)
from speechunits.data.synth.text import transcript_words
from speechunits.errors import DataError, ManifestError
from speechunits.eval.pair_accuracy import pair_accuracy


# --------------------------------------------------------------------------- generation
@pytest.mark.festival
def test_lexical_nonword_rules_hold_for_every_pair() -> None:
    pairs = lexical_pairs(60, seed=1)
    assert [p.id for p in pairs] == [str(i) for i in range(1, 61)]
    assert len({p.word for p in pairs}) == 60  # every word once before any is reused
    real = vocabulary_words() | COMMON_WORDS
    for p in pairs:
        assert p.word in vocabulary_words() and p.nonword not in real
        assert p.nonword in nonword_candidates(p.word)
        assert len(p.nonword) == len(p.word) and sum(a != b for a, b in zip(p.word, p.nonword)) == 1
        assert 1 <= sum(map(is_vowel, p.word_phones)) <= 3
        assert differs_by_one_consonant(p.word_phones, p.nonword_phones)
        assert [x for x in p.word_phones if is_vowel(x)] == [x for x in p.nonword_phones if is_vowel(x)]
        assert p.frequency >= 0
    assert lexical_pairs(60, seed=1) == pairs
    assert lexical_pairs(60, seed=2) != pairs


def test_phoneme_rule_and_candidates() -> None:
    assert differs_by_one_consonant(("b", "ˈæ", "t"), ("k", "ˈæ", "t"))
    assert not differs_by_one_consonant(("b", "ˈæ", "t"), ("b", "ˈɛ", "t"))  # a vowel
    assert not differs_by_one_consonant(("b", "ˈæ", "t"), ("k", "ˈæ", "p"))  # two phones
    assert not differs_by_one_consonant(("b", "ˈæ", "t"), ("b", "l", "ˈæ", "t"))  # length
    cands = nonword_candidates("basket")
    assert "bastet" in cands and "pasket" in cands and all(len(c) == 6 for c in cands)
    assert all(c.endswith("ed") for c in nonword_candidates("carried"))
    assert all(c.endswith("ies") for c in nonword_candidates("cookies"))  # the inflection is kept


def test_syntactic_pairs_types_minimal_and_deterministic() -> None:
    pairs = syntactic_pairs(40, seed=0)
    assert pairs == syntactic_pairs(40, seed=0) and pairs != syntactic_pairs(40, seed=1)
    assert {p.type for p in pairs} == set(SYNTACTIC_TYPES)
    assert len({p.grammatical for p in pairs}) == 40
    subtypes = set()
    for p in pairs:
        subtypes.add(p.subtype)
        good, bad = ([w.lower() for w in transcript_words(s)] for s in (p.grammatical, p.ungrammatical))
        assert good != bad
        if p.type == "word_order":
            assert sorted(good) == sorted(bad) and len(good) == len(bad)
            diff = [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]
            assert len(diff) == 2 and diff[1] == diff[0] + 1  # an adjacent swap
        elif p.subtype == "dropped":
            assert len(good) == len(bad) + 1 and any(good[:i] + good[i + 1:] == bad for i in range(len(good)))
        elif p.subtype == "doubled":
            assert len(bad) == len(good) + 1 and any(bad[:i] + bad[i + 1:] == good for i in range(len(bad)))
        else:  # one word substituted
            assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad)) == 1
    assert {"numeral_plural", "one_singular", "dropped", "doubled", "subject_verb", "adjective_noun"} <= subtypes


# --------------------------------------------------------------------------- gold.csv and reader
def _write_gold(path: Path, task: str, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=GOLD_COLUMNS[task])
        w.writeheader()
        w.writerows(rows)
    return path


def _syn_rows(n: int, voices=("v1", "v2")) -> list[dict]:
    rows = []
    for i in range(n):
        for v in voices:
            for correct in (1, 0):
                rows.append({"id": str(i), "filename": f"f{i}{v}{correct}", "type": "agreement" if i % 2 else "word_order",
                             "subtype": "x", "correct": correct, "voice": v, "transcription": f"s{i} {correct}"})
    return rows


def test_read_gold_and_loader(tmp_path: Path) -> None:
    root = tmp_path / "zerospeech2021"
    gold = _write_gold(root / "syntactic/dev/gold.csv", "syntactic", _syn_rows(2))
    for row in _syn_rows(2):
        (root / "syntactic/dev" / f"{row['filename']}.wav").write_bytes(b"")
    items = read_gold(gold, "syntactic")
    assert len(items) == 8 and items[0] == GoldItem("0", "f0v11", True, "v1", "s0 1", "word_order", "x", 2)
    utts = load_zr2021(root, "syntactic/dev")
    assert [u.id for u in utts] == sorted(r["filename"] for r in _syn_rows(2))
    assert utts[0].text == "s0 0" and utts[0].speaker == "v1" and utts[0].extra["pair_id"] == "0"
    (root / "syntactic/test").mkdir()
    (root / "syntactic/test/abc.wav").write_bytes(b"")
    assert [(u.id, u.text) for u in load_zr2021(root, "syntactic/test")] == [("abc", None)]
    assert "zr2021" in CORPORA and CORPORA["zr2021"].splits == ("lexical/dev", "lexical/test", "syntactic/dev",
                                                                 "syntactic/test")
    with pytest.raises(ManifestError, match="lexical/dev"):
        load_zr2021(root, "lexical/dev")


def test_read_gold_errors(tmp_path: Path) -> None:
    rows = _syn_rows(2)
    bad = tmp_path / "missing_col.csv"
    bad.write_text("id,filename,correct,voice\n0,a,1,v\n")
    with pytest.raises(ManifestError, match=r"missing_col.csv:1: .*lacks column\(s\) type, subtype, transcription"):
        read_gold(bad, "syntactic")
    unpaired = _write_gold(tmp_path / "unpaired.csv", "syntactic", rows[:3])
    with pytest.raises(ManifestError, match=r"unpaired.csv:4: id '0' voice 'v2' is unpaired"):
        read_gold(unpaired, "syntactic")
    flag = _write_gold(tmp_path / "flag.csv", "syntactic", [{**rows[0], "correct": "yes"}, *rows[1:]])
    with pytest.raises(ManifestError, match=r"flag.csv:2: 'correct' must be 1 or 0"):
        read_gold(flag, "syntactic")
    dup = _write_gold(tmp_path / "dup.csv", "syntactic", [*rows, rows[0]])
    with pytest.raises(ManifestError, match="repeated"):
        read_gold(dup, "syntactic")
    ok = _write_gold(tmp_path / "ok.csv", "syntactic", rows)
    with pytest.raises(ManifestError, match=r"ok.csv:2: file 'f0v11' has no audio"):
        read_gold(ok, "syntactic", audio_dir=tmp_path)


# --------------------------------------------------------------------------- pair accuracy
def _items(rows: list[dict]) -> list[GoldItem]:
    return [GoldItem(r["id"], r["filename"], bool(r["correct"]), r["voice"], "", r.get("type"), r.get("subtype"))
            for r in rows]


def test_pair_accuracy_rule_ties_and_voices() -> None:
    items = _items(_syn_rows(2))
    # id 0: v1 right (1), v2 tie (0.5) -> 0.75; id 1: v1 wrong (0), v2 right (1) -> 0.5; mean 0.625
    scores = {"f0v11": -1.0, "f0v10": -2.0, "f0v21": -3.0, "f0v20": -3.0,
              "f1v11": -5.0, "f1v10": -4.0, "f1v21": -1.0, "f1v20": -9.0}
    rep = pair_accuracy(items, scores, num_bootstrap=200)
    assert rep["accuracy"] == pytest.approx(0.625) and rep["n_pairs"] == 4 and rep["n_ids"] == 2
    assert rep["by_type"]["word_order"]["accuracy"] == pytest.approx(0.75)
    assert rep["by_type"]["agreement"]["accuracy"] == pytest.approx(0.5)
    assert rep["ci_low"] <= rep["accuracy"] <= rep["ci_high"]
    per_pair = pair_accuracy(items, scores, group_by=("id", "voice"), num_bootstrap=0)
    assert per_pair["n_ids"] == 4 and per_pair["accuracy"] == pytest.approx(0.625)
    del scores["f1v20"]
    with pytest.raises(DataError, match="no score for gold file 'f1v20'"):
        pair_accuracy(items, scores)


def test_pair_accuracy_ci_contains_truth() -> None:
    rows = _syn_rows(200, voices=("v",))
    items = _items(rows)

    def scores_for(right: np.ndarray) -> dict[str, float]:  # the correct member scores higher iff right[id]
        return {r["filename"]: float(r["correct"] == int(right[int(r["id"])])) for r in rows}

    exact = np.zeros(200, bool)
    exact[np.random.default_rng(0).permutation(200)[:140]] = True
    rep = pair_accuracy(items, scores_for(exact), num_bootstrap=500, seed=1)
    assert rep["accuracy"] == pytest.approx(0.7) and rep["ci_low"] < 0.7 < rep["ci_high"]
    assert 0.05 < rep["ci_high"] - rep["ci_low"] < 0.2  # about 2 * 1.96 * sqrt(.7 * .3 / 200) = 0.127
    assert pair_accuracy(items, scores_for(exact), num_bootstrap=500, seed=1) == rep
    # coverage: over accuracies drawn around a true 0.7, the 95% interval holds 0.7 about 95% of the time
    rng = np.random.default_rng(1)
    hits = [pair_accuracy(items, scores_for(rng.random(200) < 0.7), num_bootstrap=300, seed=k)
            for k in range(40)]
    coverage = np.mean([r["ci_low"] <= 0.7 <= r["ci_high"] for r in hits])
    assert 0.8 <= coverage <= 1.0


# --------------------------------------------------------------------------- lm-probe
def test_lm_probe_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert COMMANDS["lm-probe"][0] == "speechunits.lm.probe_cli"
    rows = _syn_rows(2)
    gold = _write_gold(tmp_path / "gold.csv", "syntactic", rows)
    # sum favours the correct member everywhere, mean the incorrect one
    jsonl = tmp_path / "scores.jsonl"
    jsonl.write_text("".join(json.dumps({"id": r["filename"], "sum_logprob": -1.0 if r["correct"] else -2.0,
                                         "mean_logprob": -2.0 if r["correct"] else -1.0}) + "\n" for r in rows))
    out = tmp_path / "report.json"
    assert main(["lm-probe", "--gold", str(gold), "--task", "syntactic", "--scores", str(jsonl), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["accuracy"] == 1.0
    assert "syntactic: accuracy 1.0000" in capsys.readouterr().out
    assert main(["lm-probe", "--gold", str(gold), "--task", "syntactic", "--scores", str(jsonl), "--score", "mean",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["accuracy"] == 0.0
    txt = tmp_path / "zerospeech.txt"
    txt.write_text("".join(f"{r['filename']} {-1.0 if r['correct'] else -1.0}\n" for r in rows))
    assert main(["lm-probe", "--gold", str(gold), "--task", "syntactic", "--scores", str(txt), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["accuracy"] == 0.5  # all ties
    txt.write_text("".join(f"{r['filename']} 0\n" for r in rows[1:]))
    assert main(["lm-probe", "--gold", str(gold), "--task", "syntactic", "--scores", str(txt), "--out", str(out)]) == 2
    assert "no score for gold file 'f0v11'" in capsys.readouterr().err
    txt.write_text("f0v11 zero\n")
    assert main(["lm-probe", "--gold", str(gold), "--task", "syntactic", "--scores", str(txt), "--out", str(out)]) == 2
    assert "zerospeech.txt:1: score is not a number" in capsys.readouterr().err


# --------------------------------------------------------------------------- the synthetic corpus
@pytest.mark.festival
def test_zr2021_corpus_prepare_data_and_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "corpus"
    assert main(["synth-corpus", "--layout", "zr2021", "--out", str(out), "--num-pairs", "2", "--seed", "0"]) == 0
    root = Path(capsys.readouterr().out.strip())
    assert root == out.absolute() / "zerospeech2021"
    for task in ("lexical", "syntactic"):
        header = (root / task / "dev" / "gold.csv").read_text().splitlines()[0]
        assert header == ",".join(GOLD_COLUMNS[task])
        items = read_gold(root / task / "dev" / "gold.csv", task, audio_dir=root / task / "dev")
        assert len(items) == 8 and {i.voice for i in items} == {"kal", "slt"}
        data = tmp_path / f"data_{task}"
        assert main(["prepare-data", "--corpus", "zr2021", "--corpus-dir", str(root), "--split", f"{task}/dev",
                     "--out", str(data)]) == 0
        manifest = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
        assert sorted(m["id"] for m in manifest) == sorted(i.filename for i in items)
        assert all(m["text"] for m in manifest)
    spk = {d["id"]: d for d in json.loads((out / ".synth" / "zr2021" / "speakers.json").read_text())}
    utts = json.loads((out / ".synth" / "zr2021" / "utterances.json").read_text())
    by_pair: dict[tuple[str, str], set[str]] = {}
    for item in read_gold(root / "syntactic" / "dev" / "gold.csv", "syntactic"):
        by_pair.setdefault((item.id, item.voice), set()).add(json.dumps(utts[item.filename]["speaker"]))
    assert all(len(s) == 1 for s in by_pair.values()) and len(spk) == 8  # same speaker within a pair
