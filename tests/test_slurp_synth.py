"""The synthetic SLURP layout (speechunits.data.synth.slurp_layout), its loader round trip and recipe."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from speechunits.data.corpora import load_slurp
from speechunits.data.jsonl import load_manifest, read_jsonl_manifest
from speechunits.data.synth.slurp_layout import allocate, slurp_plan, slurp_templates, template_words
from speechunits.errors import ConfigError, ManifestError
from speechunits.slu.slurp_f1 import parse_annotation
from speechunits.slu.tasks import SLURP_SCENARIOS

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train": 40, "devel": 20, "test": 20}


def fake_corpus(out: Path, splits: dict[str, int] = SPLITS, **kw: object) -> Path:
    """The plan's text files, with empty files standing in for the audio (the loader only checks they exist)."""
    plan = slurp_plan(out, splits, **kw)
    for utt in plan.utts:
        Path(utt.audio).parent.mkdir(parents=True, exist_ok=True)
        Path(utt.audio).touch()
    plan.write_files(plan.utts)
    return plan.root


def records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / "dataset/slurp" / f"{split}.jsonl").read_text().splitlines()]


def test_templates_cover_the_slurp_scenarios() -> None:
    data = slurp_templates()
    assert tuple(s["scenario"] for s in data["scenarios"]) == SLURP_SCENARIOS
    for scen in data["scenarios"]:
        assert len(scen["intents"]) >= 1 and all(i.startswith(scen["scenario"] + "_") for i in scen["intents"])
    assert sum(len(s["intents"]) for s in data["scenarios"]) >= 50
    assert all(w == w.lower() and w.isalpha() for w in template_words(data))


def test_allocate_is_proportional_and_exact() -> None:
    assert allocate(10, [3, 1]) == [8, 2]
    assert allocate(3, [1, 1, 1, 1]) == [1, 1, 1, 0]
    assert sum(allocate(97, [3.0 - i / 10 for i in range(18)])) == 97


def test_plan_records_fields_and_determinism(tmp_path: Path) -> None:
    root = fake_corpus(tmp_path / "a", recordings_per_sentence=3)
    assert root == (tmp_path / "a" / "slurp").absolute()
    again = fake_corpus(tmp_path / "b", recordings_per_sentence=3)
    for split in SPLITS:
        assert records(root, split) == records(again, split)  # same seed, same corpus
    other = fake_corpus(tmp_path / "c", recordings_per_sentence=3, seed=1)
    assert records(other, "train") != records(root, "train")
    meta = json.loads((root / "dataset/slurp/metadata.json").read_text())
    sentences, speakers, slurp_ids = {}, {}, set()
    for split, n in SPLITS.items():
        recs = records(root, split)
        assert len(recs) == n
        sentences[split] = {r["sentence"] for r in recs}
        speakers[split] = set()
        for r in recs:
            assert isinstance(r["slurp_id"], int) and r["slurp_id"] not in slurp_ids
            slurp_ids.add(r["slurp_id"])
            assert r["intent"] == f"{r['scenario']}_{r['action']}" and r["scenario"] in SLURP_SCENARIOS
            words = r["sentence"].split()
            assert [t["surface"] for t in r["tokens"]] == words and r["sentence"] == r["sentence"].lower()
            assert all(t == {"surface": w, "id": i, "lemma": w, "pos": "X"} for i, (t, w) in
                       enumerate(zip(r["tokens"], words)))
            text, ents = parse_annotation(r["sentence_annotation"])
            assert text == r["sentence"]
            assert ents == [(e["type"], " ".join(words[i] for i in e["span"])) for e in r["entities"]]
            assert len(r["recordings"]) == 3
            usr = [meta[str(r["slurp_id"])]["recordings"][rec["file"]]["usrid"] for rec in r["recordings"]]
            assert len(set(usr)) == 3  # several speakers read one sentence
            speakers[split] |= set(usr)
            for rec in r["recordings"]:
                assert rec["file"].startswith("audio-") and rec["file"].endswith(("-headset.flac", "-close.flac"))
                assert rec | {"file": ""} == {"file": "", "wer": 0.0, "ent_wer": 0.0, "status": "correct"}
    for a, b in (("train", "devel"), ("train", "test"), ("devel", "test")):
        assert not sentences[a] & sentences[b] and not speakers[a] & speakers[b]


def test_scenario_frequencies_follow_the_slurp_order(tmp_path: Path) -> None:
    plan = slurp_plan(tmp_path, {"train": 300})
    root = fake_corpus(tmp_path, {"train": 300})
    counts = Counter(r["scenario"] for r in records(root, "train"))
    order = [counts[s] for s in SLURP_SCENARIOS]
    assert min(order) >= 1 and order == sorted(order, reverse=True) and order[0] > 2 * order[-1]
    assert len(plan.utts) == 600


def test_plan_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SLURP splits are train, devel, test"):
        slurp_plan(tmp_path, {"valid": 3})
    with pytest.raises(ConfigError, match="recordings-per-sentence"):
        slurp_plan(tmp_path, {"train": 3}, recordings_per_sentence=0)
    with pytest.raises(ConfigError, match="fewer sentences"):
        slurp_plan(tmp_path, {"train": 5000})
    with pytest.raises(ConfigError, match="at most 20000 sentences"):
        slurp_plan(tmp_path, {"train": 20001})


def test_loader_keeps_annotation_and_entities(tmp_path: Path) -> None:
    root = fake_corpus(tmp_path)
    meta = json.loads((root / "dataset/slurp/metadata.json").read_text())
    utts = load_slurp(root, "devel")
    recs = records(root, "devel")
    assert len(utts) == 2 * len(recs)
    by_file = {Path(rec["file"]).stem: r for r in recs for rec in r["recordings"]}
    for u in utts:
        r = by_file[u.id]
        assert u.text == r["sentence"] and u.speaker == meta[str(r["slurp_id"])]["recordings"][u.id + ".flac"]["usrid"]
        assert u.extra == {"scenario": r["scenario"], "action": r["action"], "intent": r["intent"],
                           "slurp_id": str(r["slurp_id"]), "sentence_annotation": r["sentence_annotation"],
                           "entities": r["entities"]}
    path = root / "dataset/slurp/devel.jsonl"
    bad = dict(recs[0], entities=[{"span": "2", "type": "time"}])
    path.write_text(json.dumps(recs[1]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ManifestError, match=r"devel.jsonl:2: expected entities like"):
        load_slurp(root, "devel")
    path.write_text(json.dumps(dict(recs[0], sentence_annotation=["x"])) + "\n")
    with pytest.raises(ManifestError, match=r"devel.jsonl:1: field 'sentence_annotation' has the wrong type \(list\)"):
        load_slurp(root, "devel")


def test_prepare_data_carries_annotations(tmp_path: Path) -> None:
    from speechunits.cli import main as cli_main

    root = fake_corpus(tmp_path)
    out = tmp_path / "data" / "devel"
    assert cli_main(["prepare-data", "--corpus", "slurp", "--corpus-dir", str(root), "--split", "devel",
                     "--out", str(out)]) == 0
    kaldi = {u.id: u for u in load_manifest(out)}
    full = {u.id: u for u in read_jsonl_manifest(out / "manifest.jsonl")}
    assert kaldi.keys() == full.keys()
    for uid, u in full.items():
        assert isinstance(u.extra["entities"], list) and "entities" not in kaldi[uid].extra  # list: manifest only
        assert kaldi[uid].extra["sentence_annotation"] == u.extra["sentence_annotation"]
        assert kaldi[uid].extra["scenario"] == u.extra["scenario"]


@pytest.mark.festival
def test_every_template_word_is_in_festivals_lexicon() -> None:
    from speechunits.data.synth.festival import lexicon_words

    words = sorted(template_words())
    assert sorted(set(words) - lexicon_words(words)) == []


def _recipe_env() -> dict[str, str]:
    """This checkout's package and the running venv, for ``speechunits`` called by the recipes."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHUNITS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SPEECHUNITS_VENV"] = str(Path(sys.executable).parent.parent)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_recipe_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


TINY = "epochs_per_task=1 batch_size=16 first_task.min_epochs=1 first_task.max_epochs=2 first_task.patience=1"


@pytest.mark.festival
@pytest.mark.slow
def test_slurp_recipe_on_synthetic_corpus(tmp_path: Path) -> None:
    """synth-corpus --layout slurp (one sentence per scenario and split), then egs/slurp/run.sh stages 0-3."""
    from speechunits.cli import main as cli_main

    assert cli_main(["synth-corpus", "--layout", "slurp", "--out", str(tmp_path / "corpus"), "--splits",
                     "train:18,devel:18,test:18", "--recordings-per-sentence", "1", "--nj", "2"]) == 0
    root = tmp_path / "corpus" / "slurp"
    utts = load_slurp(root, "train")
    assert len(utts) == 18 and {u.extra["scenario"] for u in utts} == set(SLURP_SCENARIOS)
    assert all(Path(u.audio).suffix == ".flac" and u.speaker for u in utts)
    _run(["bash", str(REPO / "egs/slurp/run.sh"), "--corpus-dir", str(root), "--slu-config",
          str(REPO / "egs/synth/conf/slu_cil_slurp_tiny.yaml"), "--methods", "ft er_m2=er,memory.fraction=0.1",
          "--seeds", "0,1", "--device", "cpu", "--overrides", TINY, "--data-root", "data", "--exp-root", "exp"], cwd=tmp_path)
    exp = tmp_path / "exp" / "slu_cil_slurp-3"
    table = (exp / "RESULTS.md").read_text()
    assert "| ft | ft | none | 2 (0, 1) |" in table and "| er_m2 | er | 10% herding | 2 (0, 1) |" in table and "SLU-F1" in table
    res = json.loads((exp / "er_m2" / "seed1" / "results.json").read_text())
    assert res["benchmark"] == "slurp-3" and res["settings"]["memory"]["fraction"] == 0.1 and "slu_f1" in res
    assert (exp / "task0" / "seed1" / "plateau.json").is_file()  # the shared first task of each seed


@pytest.mark.festival
@pytest.mark.slow
def test_synth_run_slu_with_slurp(tmp_path: Path) -> None:
    """egs/synth/run_slu.sh --corpus slurp: its own corpus, data dirs slu_slurp_<split>, exp slu_cil_slurp_<bench>."""
    _run(["bash", str(REPO / "egs/synth/run_slu.sh"), "--corpus", "slurp", "--slurp-splits",
          "train:18,devel:18,test:18", "--slurp-recordings", "1", "--methods", "ft", "--overrides", TINY,
          "--data-root", "data", "--exp-root", "exp"], cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "slu_corpora", "slu_slurp_devel", "slu_slurp_test", "slu_slurp_train"]
    assert (tmp_path / "exp" / "slu_cil_slurp_slurp-3" / "RESULTS.md").is_file()


def test_run_slu_rejects_an_unknown_corpus(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "egs/synth/run_slu.sh"), "--corpus", "atis"], cwd=tmp_path,
                          env=_recipe_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "--corpus must be fsc or slurp" in proc.stderr


@pytest.mark.festival
@pytest.mark.slow
def test_synthesized_corpus_identical_for_any_nj(tmp_path: Path) -> None:
    from speechunits.data.synth import synthesize_slurp

    roots = [synthesize_slurp(tmp_path / f"nj{nj}", {"train": 2, "devel": 1, "test": 1}, nj=nj) for nj in (1, 2)]
    files = [{p.relative_to(r): p.read_bytes() for p in sorted(r.rglob("*")) if p.is_file()} for r in roots]
    assert files[0] == files[1] and len(files[0]) == 8 + 4  # 8 flac, 3 jsonl, metadata.json
