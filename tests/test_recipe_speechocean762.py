"""egs/speechocean762/run.sh: data prep of the real layout, extra data dirs, the arguments it
gives recipes/sylber.sh (several train sets as YAML lists), and its errors.

Stage 0 runs the real ``speechunits prepare-data`` on a tiny fake corpus in the published
layout; the later stages run with a fake ``speechunits`` that records its calls, so the tests
check the sequencing and the arguments, not the commands (tested in their own modules).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "egs" / "speechocean762" / "run.sh"
SYLBER = REPO / "recipes" / "sylber.sh"
SR = 16000

FAKE_SPEECHUNITS = r"""#!/usr/bin/env bash
printf '%q ' speechunits "$@" >> "$FAKE_CALLS"; echo >> "$FAKE_CALLS"
verb="$1"; shift
get() { local want="$1"; shift; while (( $# )); do [[ "$1" == "$want" ]] && { echo "$2"; return; }; shift; done; }
case "$verb" in
  prepare-data) out=$(get --out "$@"); mkdir -p "$out"; echo '{}' > "$out/provenance.json"; : > "$out/manifest.jsonl" ;;
  bootstrap-segments|tokenize) out=$(get --out "$@"); mkdir -p "$out"; : > "$out/units.jsonl" ;;
  train-sylber|train-hubert) dir=$(get --out-dir "$@"); mkdir -p "$dir"; : > "$dir/model.pt" ;;
  frame-units) out=$(get --out "$@"); mkdir -p "$out"; : > "$out/units.jsonl"; : > "$out/codebook.pt" ;;
  combine-data) mkdir -p "$1"; echo '{}' > "$1/provenance.json" ;;
  probe-phones) out=$(get --markdown "$@"); mkdir -p "$(dirname "$out")"; echo "| probe |" > "$out" ;;
  eval-boundaries) out=$(get --json "$@"); mkdir -p "$(dirname "$out")"; echo '{}' > "$out" ;;
  results-table) out=$(get --out "$@"); mkdir -p "$(dirname "$out")"; echo "# $out" > "$out" ;;
  launch) while (( $# )) && [[ "$1" != -- ]]; do shift; done; shift; exec "$0" "$@" ;;  # the training it starts
  *) echo "fake speechunits: unexpected verb $verb" >&2; exit 2 ;;
esac
"""


def bash(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a recipe from ``cwd``; the test interpreter's ``speechunits`` comes first on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHUNITS_")}
    base["PATH"] = f"{Path(sys.executable).parent}:{base.get('PATH', '')}"
    return subprocess.run(["bash", str(script), *args], cwd=cwd, env=base | (env or {}), capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose `speechunits` only records its calls (utils/path.sh takes $SPEECHUNITS_VENV/bin)."""
    bin_dir = tmp_path / "fakevenv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "speechunits").write_text(FAKE_SPEECHUNITS)
    (bin_dir / "speechunits").chmod(0o755)
    return {"SPEECHUNITS_VENV": str(bin_dir.parent), "FAKE_CALLS": str(tmp_path / "calls.txt")}


def calls(env: dict[str, str], verb: str) -> list[list[str]]:
    path = Path(env["FAKE_CALLS"])
    if not path.is_file():
        return []
    rows = [subprocess.run(["bash", "-c", f"for a in {line}; do echo \"$a\"; done"], capture_output=True,
                           text=True).stdout.splitlines()[1:] for line in path.read_text().splitlines()]
    return [r for r in rows if r and r[0] == verb]


def opt(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def make_speechocean762(root: Path) -> Path:
    """The published layout: train/ and test/ Kaldi dirs with root-relative WAVE/ paths, 2 utterances each."""
    rng = np.random.default_rng(0)
    for split, spk, utts in (("train", "0001", ("000010011", "000010035")), ("test", "0003", ("000030012", "000030024"))):
        (root / split).mkdir(parents=True)
        for utt in utts:
            wav = root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR, format="WAV", subtype="PCM_16")
        (root / split / "wav.scp").write_text("".join(f"{u}\tWAVE/SPEAKER{spk}/{u}.WAV\n" for u in utts))
        (root / split / "text").write_text("".join(f"{u}\tKATE LOVES CHINA\n" for u in utts))
        (root / split / "utt2spk").write_text("".join(f"{u}\t{spk}\n" for u in utts))
        (root / split / "spk2utt").write_text(f"{spk} {' '.join(utts)}\n")
    return root


def data_dirs(root: Path, *names: str) -> list[Path]:
    """Completed-looking data dirs (provenance.json), as another recipe's stage 0 leaves them."""
    out = []
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "provenance.json").write_text("{}")
        out.append(root / name)
    return out


def test_stage0_prepares_the_real_layout_from_another_cwd(tmp_path: Path) -> None:
    from speechunits.data.jsonl import load_manifest

    make_speechocean762(tmp_path / "corpus" / "speechocean762")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["--corpus-dir", "../corpus/speechocean762", "--data-root", "../data", "--exp-root", "../exp",
            "--stop-stage", "0"]
    r = bash(RUN, *args, cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    train, test = load_manifest(tmp_path / "data" / "so762_train"), load_manifest(tmp_path / "data" / "so762_test")
    assert [u.id for u in train] == ["000010011", "000010035"] and [u.id for u in test] == ["000030012", "000030024"]
    assert Path(test[0].audio) == (tmp_path / "corpus/speechocean762/WAVE/SPEAKER0003/000030012.WAV").resolve()
    assert (tmp_path / "exp" / "data" / "log" / "prepare.so762_test.log").is_file()
    assert "so762_train  (2 utterances)" in r.stdout
    r2 = bash(RUN, *args, cwd=elsewhere)
    assert r2.returncode == 0 and "skipped" in r2.stdout + r2.stderr


@pytest.mark.parametrize("extra, message", [
    ([], "expected layout of speechocean762"),
    (["--test-sets", "dev"], "speechocean762 has the splits train and test; got 'dev'"),
])
def test_stage0_errors_name_the_layout(tmp_path: Path, extra: list[str], message: str) -> None:
    corpus = tmp_path / "so762"
    if extra:
        make_speechocean762(corpus)
    r = bash(RUN, "--corpus-dir", str(corpus), "--data-root", str(tmp_path / "data"), *extra, cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert not (tmp_path / "data").exists()


def test_help_lists_stages_and_the_corpus(tmp_path: Path) -> None:
    r = bash(RUN, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for n in range(12):
        assert any(line.lstrip().startswith(f"{n} ") for line in r.stdout.splitlines()), n
    for text in ("--extra-train-sets", "--teacher-init", "no time alignments", "task.augment.reverb.prob=0"):
        assert text in r.stdout, text
    assert "openslr.org/101" in RUN.read_text() and "CC BY 4.0" in RUN.read_text()


def test_sylber_stages_with_extra_sets_and_a_given_teacher(tmp_path: Path, fake_env: dict[str, str]) -> None:
    from speechunits.train.config import load_config

    data = tmp_path / "data"
    data_dirs(data, "so762_train", "so762_test")
    synth, synth_test = data_dirs(tmp_path / "synth" / "data", "train-clean-100", "test-clean")
    (tmp_path / "hubert.pt").write_text("x")
    exp = tmp_path / "exp"
    args = ["--data-root", str(data), "--exp-root", str(exp), "--stage", "1", "--nj", "1",
            "--extra-train-sets", "synth/data/train-clean-100", "--extra-test-sets", "synth/data/test-clean",
            "--teacher-init", "hubert.pt", "--stage1-opts", "task.augment.reverb.prob=0"]
    r = bash(RUN, *args, cwd=tmp_path, env=fake_env)  # relative paths: from the caller's cwd
    assert r.returncode == 0, r.stdout + r.stderr
    assert (data / "train-clean-100").resolve() == synth.resolve() and (data / "test-clean").is_symlink()
    boot = [opt(c, "--data") for c in calls(fake_env, "bootstrap-segments") if "--job" not in c]
    assert boot == [str(data / s) for s in ("so762_train", "train-clean-100", "so762_test", "test-clean")]
    s1, s2 = calls(fake_env, "train-sylber")
    overrides = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in s1 if "=" in a}
    assert ast.literal_eval(overrides["task.data"]) == [str(data / "so762_train"), str(data / "train-clean-100")]
    assert ast.literal_eval(overrides["task.segments"]) == [str(exp / "sylber/bootstrap" / s)
                                                            for s in ("so762_train", "train-clean-100")]
    assert overrides["task.init"] == str(tmp_path / "hubert.pt") and s1[-1] == "task.augment.reverb.prob=0"
    egs = RUN.parent  # the recipe runs from its own folder
    assert (egs / opt(s1, "--config")).resolve() == REPO / "recipes/conf/sylber_stage1_real.yaml"
    assert (egs / opt(s2, "--config")).resolve() == REPO / "recipes/conf/sylber_stage2_real.yaml"
    # the override the recipe writes is a YAML list for train-sylber
    cfg = load_config(egs / opt(s1, "--config"), [a for a in s1 if "=" in a])
    assert cfg.task["data"] == [str(data / "so762_train"), str(data / "train-clean-100")]
    assert cfg.task["augment"]["reverb"]["prob"] == 0 and cfg.task["augment"]["speed"]["prob"] > 0
    tok = sorted(opt(c, "--data") for c in calls(fake_env, "tokenize"))
    assert tok == sorted(str(data / s) for s in ("so762_test", "test-clean") for _ in range(2))
    assert calls(fake_env, "eval-boundaries") == []
    assert "stage 11: skipped: speechocean762 has no time alignments" in r.stdout
    assert calls(fake_env, "train-hubert") == []  # --teacher-init: no HuBERT stages

    Path(fake_env["FAKE_CALLS"]).unlink()
    r = bash(RUN, *args, "--stage", "11", "--alignments", str(tmp_path / "ali"), cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    scored = [opt(c, "--units") for c in calls(fake_env, "eval-boundaries")]
    assert scored == [str(exp / "sylber" / d / "test-clean")  # never the speechocean762 test split
                      for d in ("bootstrap", "units/stage1", "units/stage2")]


def test_single_train_set_keeps_plain_paths(tmp_path: Path, fake_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    data_dirs(data, "tr", "te")
    r = bash(SYLBER, "--data-root", str(data), "--exp-dir", str(tmp_path / "exp"), "--train-set", "tr",
             "--test-sets", "te", "--stop-stage", "3", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    s1, _ = calls(fake_env, "train-sylber")
    assert f"task.data={data / 'tr'}" in s1 and f"task.segments={tmp_path / 'exp/bootstrap/tr'}" in s1


@pytest.mark.parametrize("extra, message", [
    (["--stage", "7"], "it is made by stage 4"),
    (["--teacher-init", "nothing.pt"], "--teacher-init"),
    (["--extra-train-sets", "synth/a/train synth/b/train", "--teacher-init", "h.pt"], "two extra sets named 'train'"),
    (["--extra-test-sets", "nodir"], "no provenance.json"),
    (["--extra-train-sets", "synth/a/so762_x"], "reserved for speechocean762"),
])
def test_bad_options(tmp_path: Path, fake_env: dict[str, str], extra: list[str], message: str) -> None:
    data_dirs(tmp_path / "data", "so762_train", "so762_test")
    data_dirs(tmp_path / "synth" / "a", "train", "so762_x")
    data_dirs(tmp_path / "synth" / "b", "train")
    (tmp_path / "h.pt").write_text("x")
    r = bash(RUN, "--data-root", str(tmp_path / "data"), "--exp-root", str(tmp_path / "exp"), "--stage", "1",
             *extra, cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and message in r.stderr, r.stdout + r.stderr
    assert calls(fake_env, "train-sylber") == []


def test_hubert_stages_train_the_teacher_of_sylber(tmp_path: Path, fake_env: dict[str, str]) -> None:
    """Without --teacher-init: combine the train sets, MFCC targets, iteration 1, layer targets,
    iteration 2, the probe; Sylber stage 1 then starts from iteration 2."""
    data = tmp_path / "data"
    data_dirs(data, "so762_train", "so762_test")
    data_dirs(tmp_path / "synth" / "data", "train-clean-100", "dev-clean")
    exp = tmp_path / "exp"
    r = bash(RUN, "--data-root", str(data), "--exp-root", str(exp), "--stage", "1", "--stop-stage", "7", "--nj", "1",
             "--extra-train-sets", "synth/data/train-clean-100", "--hubert-valid-set", "synth/data/dev-clean",
             "--probe-set", "synth/data/dev-clean", "--probe-alignments", "ali", "--hubert-layer", "4",
             "--hubert-iter1-opts", "max_steps=10", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    (combine,) = calls(fake_env, "combine-data")
    assert combine[1:] == [str(data / s) for s in ("train_all", "so762_train", "train-clean-100")]
    units = calls(fake_env, "frame-units")
    assert [opt(c, "--data") for c in units] == [str(data / s) for s in ("train_all", "dev-clean")] * 2
    assert opt(units[0], "--features") == "mfcc" and opt(units[2], "--layer") == "4"
    assert opt(units[2], "--model") == str(exp / "hubert/iter1/model.pt")
    it1, it2 = calls(fake_env, "train-hubert")
    assert f"task.targets={exp / 'hubert/targets1/train_all'}" in it1 and it1[-1] == "max_steps=10"
    assert f"task.valid_data={data / 'dev-clean'}" in it2
    (probe,) = calls(fake_env, "probe-phones")
    assert f"hubert-iter2={exp / 'hubert/iter2/model.pt'}" in probe
    (s1,) = calls(fake_env, "train-sylber")
    assert f"task.init={exp / 'hubert/iter2/model.pt'}" in s1
