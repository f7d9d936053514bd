"""The bash recipes (egs/*/run.sh, recipes/sylber.sh), run as a user would.

Every run writes into tmp_path (``--data-root``/``--exp-root``) and starts from a cwd other
than the recipe's, so the tests also check that the recipes work from any directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
LIBRI_RUN = REPO / "egs" / "librispeech" / "run.sh"
SYNTH_RUN = REPO / "egs" / "synth" / "run.sh"
SR = 16000


def bash(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a recipe with bash from ``cwd``; the venv's ``speechunits`` is found by utils/path.sh."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHUNITS_")} | (env or {})
    return subprocess.run(["bash", str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def syllable_wave(rng: np.random.Generator, n_syll: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Voiced-like bursts (harmonic tone with a raised-cosine envelope) separated by short dips."""
    parts, sylls, t = [np.zeros(int(0.2 * SR), np.float32)], [], 0.2
    for _ in range(n_syll):
        dur = float(rng.uniform(0.15, 0.3))
        n = int(dur * SR)
        tt = np.arange(n) / SR
        f0 = float(rng.uniform(110, 200))
        tone = sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in range(1, 6))
        env = np.sin(np.pi * np.arange(n) / n) ** 2
        parts.append((0.3 * tone * env).astype(np.float32))
        sylls.append((t, t + dur))
        t += dur
    parts.append(np.zeros(int(0.2 * SR), np.float32))
    wave = np.concatenate(parts)
    wave += 1e-4 * rng.standard_normal(len(wave)).astype(np.float32)
    return wave, sylls


def make_librispeech(root: Path, split: str = "dev-clean", with_alignments: bool = True) -> Path:
    """A tiny LibriSpeech-layout corpus (2 speakers x 2 utterances) and its TextGrids; returns root."""
    from speechunits.data.alignments import Interval, write_textgrid

    rng = np.random.default_rng(0)
    for spk, chap in (("19", "198"), ("26", "495")):
        chap_dir = root / "LibriSpeech" / split / spk / chap
        chap_dir.mkdir(parents=True)
        lines = []
        for i in range(2):
            utt = f"{spk}-{chap}-{i:04d}"
            wave, sylls = syllable_wave(rng, 4 + i)
            sf.write(chap_dir / f"{utt}.flac", wave, SR, format="FLAC")
            lines.append(f"{utt} {' '.join(['BA'] * len(sylls))}\n")
            if with_alignments:
                tiers = {"syllables": [Interval(a, b, "ba") for a, b in sylls]}
                write_textgrid(root / "alignments" / split / spk / chap / f"{utt}.TextGrid", tiers,
                               xmax=len(wave) / SR)
        (chap_dir / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return root


def libri_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--data-root", str(tmp_path / "data"), "--exp-root", str(tmp_path / "exp"),
            "--train-sets", "", "--dev-sets", "dev-clean", "--test-sets", "", *extra]


def test_librispeech_stage0_from_another_cwd(tmp_path: Path) -> None:
    from speechunits.data.jsonl import load_manifest

    corpus = make_librispeech(tmp_path / "corpus")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # relative --corpus-dir/--alignments are taken from the caller's cwd
    r = bash(LIBRI_RUN, "--corpus-dir", "../corpus/LibriSpeech", "--alignments", "../corpus/alignments",
             "--stop-stage", "0", *libri_args(tmp_path), cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stage 0" in r.stdout
    data = tmp_path / "data" / "dev-clean"
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "manifest.jsonl", "provenance.json"):
        assert (data / name).is_file(), name
    utts = load_manifest(data)
    assert [u.id for u in utts] == ["19-198-0000", "19-198-0001", "26-495-0000", "26-495-0001"]
    assert all(Path(u.extra["alignment"]).is_file() for u in utts)
    assert Path(utts[0].audio).resolve().is_relative_to(corpus.resolve())
    assert (tmp_path / "exp" / "data" / "log" / "prepare.dev-clean.log").is_file()
    assert f"--out {data}" in r.stdout  # not into egs/librispeech/data
    # a second run finds the data dir complete and skips it
    r2 = bash(LIBRI_RUN, "--corpus-dir", str(corpus / "LibriSpeech"), "--alignments", str(corpus / "alignments"),
              "--stop-stage", "0", *libri_args(tmp_path), cwd=elsewhere)
    assert r2.returncode == 0, r2.stderr
    assert "skipped" in r2.stdout + r2.stderr


@pytest.mark.parametrize("corpus_dir", ["", "missing-dir"])
def test_librispeech_missing_corpus_fails_with_layout(tmp_path: Path, corpus_dir: str) -> None:
    args = ["--corpus-dir", str(tmp_path / corpus_dir) if corpus_dir else ""]
    r = bash(LIBRI_RUN, *args, *libri_args(tmp_path), cwd=tmp_path, env={"SPEECHUNITS_LIBRISPEECH": ""})
    assert r.returncode != 0
    assert "expected layout of LibriSpeech" in r.stderr
    assert "<speaker>-<chapter>.trans.txt" in r.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()


def test_librispeech_missing_split_fails_with_layout(tmp_path: Path) -> None:
    corpus = make_librispeech(tmp_path / "corpus", with_alignments=False)
    r = bash(LIBRI_RUN, "--corpus-dir", str(corpus), *libri_args(tmp_path, "--test-sets", "test-other"),
             cwd=tmp_path)
    assert r.returncode != 0
    assert "test-other" in r.stderr and "expected layout of LibriSpeech" in r.stderr
    assert not (tmp_path / "data").exists()


def test_corpus_dir_from_environment(tmp_path: Path) -> None:
    corpus = make_librispeech(tmp_path / "corpus", with_alignments=False)
    r = bash(LIBRI_RUN, "--stop-stage", "0", *libri_args(tmp_path), cwd=tmp_path,
             env={"SPEECHUNITS_LIBRISPEECH": str(corpus)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "dev-clean" / "provenance.json").is_file()


@pytest.mark.parametrize("script", [LIBRI_RUN, SYNTH_RUN, REPO / "recipes" / "sylber.sh"])
def test_help_prints_stage_table(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Stages:" in r.stdout
    assert "bootstrap" in r.stdout and "--stop-stage (current: '100')" in r.stdout
    if script != REPO / "recipes" / "sylber.sh":
        assert "  0  data prep" in r.stdout
    for n in range(1, 7):  # every stage of the Sylber recipe is in the table
        assert any(line.lstrip().startswith(f"{n}  ") for line in r.stdout.splitlines()), n
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("script", [LIBRI_RUN, SYNTH_RUN])
def test_unknown_option_rejected(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--no-such-option", "1", cwd=tmp_path)
    assert r.returncode != 0
    assert "unknown option --no-such-option" in r.stderr


@pytest.mark.parametrize("script", [LIBRI_RUN, SYNTH_RUN])
def test_bad_boolean_rejected(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--tune-shift", "yes", cwd=tmp_path)
    assert r.returncode != 0 and "boolean" in r.stderr



@pytest.mark.parametrize("script", [REPO / "recipes" / "unit2speech.sh", REPO / "egs" / "ljspeech" / "run.sh"])
def test_unit2speech_recipes_help_and_missing_arguments(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Stages:" in r.stdout and "RESULTS.md" in r.stdout and "spectrograms.png" in r.stdout
    if script.name == "unit2speech.sh":
        for n in range(1, 8):
            assert any(line.lstrip().startswith(f"{n}  ") for line in r.stdout.splitlines()), n
        r = bash(script, "--train-set", "train", cwd=tmp_path)
        assert r.returncode != 0 and "--test-set" in r.stderr
        r = bash(script, "--train-set", "a", "--test-set", "b", "--syllables-config", "x.yaml", cwd=tmp_path)
        assert r.returncode != 0 and "--syllable-units" in r.stderr
    else:
        r = bash(script, "--corpus-dir", str(tmp_path / "missing"), "--data-root", str(tmp_path / "d"), cwd=tmp_path)
        assert r.returncode != 0 and "expected layout of LJSpeech" in r.stderr
    assert not (tmp_path / "exp").exists() and not (tmp_path / "d").exists()


def test_stage_helpers(tmp_path: Path) -> None:
    """utils/stages.sh: stage ranges, logged commands, parallel JOB substitution, failures named."""
    script = tmp_path / "s.sh"
    script.write_text(f"""set -euo pipefail
stage=1
stop_stage=2
. {REPO / 'utils' / 'stages.sh'}
stage_begin 0 zero && echo "ran 0"
stage_begin 2 two && echo "ran 2"
run_logged {tmp_path}/log/a.log echo hello
run_jobs 3 {tmp_path}/log/j.JOB.log bash -c 'echo job=JOB'
run_jobs 2 {tmp_path}/log/k.JOB.log bash -c '[[ JOB == 0 ]]' || echo "jobs failed"
run_logged {tmp_path}/log/b.log bash -c 'echo oops; exit 7'
echo "not reached"
""")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7
    assert "stage 2: two" in r.stdout and "ran 2" in r.stdout and "ran 0" not in r.stdout
    assert "hello" in (tmp_path / "log" / "a.log").read_text()
    for j in range(3):
        assert f"job={j}" in (tmp_path / "log" / f"j.{j}.log").read_text()
    assert "jobs failed" in r.stdout and f"job 1 of 2 failed; see {tmp_path}/log/k.1.log" in r.stderr
    assert f"exit status 7; see {tmp_path}/log/b.log" in r.stderr and "not reached" not in r.stdout

@pytest.mark.slow
def test_librispeech_recipe_end_to_end(tmp_path: Path) -> None:
    """Stages 0, 1 and 6 on the tiny corpus: data dir, bootstrap units, RESULTS.md; rerun skips."""
    from speechunits.units import read_units

    corpus = make_librispeech(tmp_path / "corpus")
    args = ["--corpus-dir", str(corpus), "--alignments", str(corpus / "alignments"), "--nj", "2",
            "--data-root", str(tmp_path / "data"), "--exp-root", str(tmp_path / "exp"),
            "--train-sets", "", "--dev-sets", "", "--test-sets", "dev-clean"]
    r = bash(LIBRI_RUN, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for n in (0, 1, 6):
        assert f"stage {n}:" in r.stdout
    units = tmp_path / "exp" / "sylber" / "bootstrap" / "dev-clean"
    recs = list(read_units(units))
    assert [rec.id for rec in recs] == ["19-198-0000", "19-198-0001", "26-495-0000", "26-495-0001"]
    assert (units / "provenance.json").is_file()
    log = tmp_path / "exp" / "sylber" / "log"
    assert (log / "bootstrap.dev-clean.0.log").is_file() and (log / "bootstrap.dev-clean.1.log").is_file()
    results = (tmp_path / "exp" / "sylber" / "RESULTS.md").read_text()
    assert "Syllable boundaries on dev-clean" in results and "| bootstrap |" in results
    assert (tmp_path / "exp" / "sylber" / "scores.dev-clean.png").is_file()
    assert (tmp_path / "exp" / "sylber" / "eval" / "bootstrap.dev-clean.json").is_file()
    # rerun from stage 1: the unit set is complete, nothing is recomputed
    mtime = (units / "units.jsonl").stat().st_mtime_ns
    r2 = bash(LIBRI_RUN, *args, "--stage", "1", cwd=tmp_path)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "stage 0:" not in r2.stdout
    assert (units / "units.jsonl").stat().st_mtime_ns == mtime


def test_recipe_stage1_needs_data_dir(tmp_path: Path) -> None:
    r = bash(REPO / "recipes" / "sylber.sh", "--data-root", str(tmp_path / "nodata"), "--test-sets", "test-clean",
             "--exp-dir", str(tmp_path / "exp"), cwd=tmp_path)
    assert r.returncode != 0
    assert "run stage 0" in r.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.festival
@pytest.mark.slow
def test_synth_stage0_tiny_and_rerun_skips(tmp_path: Path) -> None:
    from speechunits.data.jsonl import load_manifest

    data, exp = tmp_path / "data", tmp_path / "exp"
    args = ["--tiny", "true", "--stop-stage", "0", "--data-root", str(data), "--exp-root", str(exp)]
    r = bash(SYNTH_RUN, *args, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    expected = {"train-clean-100": 3, "dev-clean": 2, "test-clean": 2, "ljspeech": 2}
    for name, count in expected.items():
        utts = load_manifest(data / name)
        assert len(utts) == count, name
        assert all(Path(u.audio).is_file() for u in utts)
    assert all("alignment" in u.extra for u in load_manifest(data / "test-clean"))
    fsc = [u for s in ("train", "valid", "test") for u in load_manifest(data / f"fsc_{s}")]
    assert len(fsc) == 6 and all("intent" in u.extra for u in fsc)
    assert f"corpora in {data / 'corpora'}" in r.stdout
    outs = [line.split(" --out ", 1)[1].split()[0] for line in r.stdout.splitlines() if " --out " in line]
    assert len(outs) == 10 and all(Path(o).is_relative_to(data) for o in outs), outs  # nothing into the repo
    stamps = {p: p.stat().st_mtime_ns for p in (data / "corpora").rglob("*") if p.is_file()}
    stamps |= {p: p.stat().st_mtime_ns for p in data.glob("*/manifest.jsonl")}
    r2 = bash(SYNTH_RUN, *args, cwd=tmp_path, timeout=900)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert r2.stderr.count("skipped") >= 7 or r2.stdout.count("skipped") >= 7, r2.stdout + r2.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps



@pytest.mark.festival
@pytest.mark.slow
def test_synth_recipe_all_stages_tiny(tmp_path: Path) -> None:
    """Every stage of egs/synth on tiny corpora and a few training steps; RESULTS.md has three rows."""
    from speechunits.encoders.checkpoints import load_encoder
    from speechunits.units import read_meta, validate_unit_set

    data, exp = tmp_path / "data", tmp_path / "exp"
    short = "max_steps=2 save_every=1 task.crop_seconds=1.0 task.max_batch_seconds=4.0"
    args = ["--tiny", "true", "--layouts", "librispeech", "--data-root", str(data), "--exp-root", str(exp),
            "--stage1-opts", short, "--stage2-opts", short, "--num-clusters", "2", "--device", "cpu"]
    r = bash(SYNTH_RUN, *args, cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    sylber = exp / "sylber"
    for name in ("stage1", "stage2"):
        assert (sylber / name / "model.pt").is_file()
        tuned = json.loads((sylber / name / "tune.json").read_text())  # thresholds picked on dev-clean
        assert tuned["data"].endswith("dev-clean") and (sylber / name / "tune.png").is_file()
        model = load_encoder(sylber / name / "model.tuned.pt")
        assert model.segmentation_defaults["norm_threshold"] == pytest.approx(tuned["best"]["norm_threshold"])
        validate_unit_set(sylber / "units" / name / "test-clean")
        producer = read_meta(sylber / "units" / name / "test-clean").producer
        assert producer["model"]["path"].endswith("model.tuned.pt")
        assert producer["norm_threshold"] == pytest.approx(tuned["best"]["norm_threshold"])
    stage2_meta = read_meta(sylber / "units" / "stage2" / "test-clean")
    assert stage2_meta.vocab_size == 3 and stage2_meta.special_ids["silence"] == 2  # k = 2 clusters + silence
    results = (sylber / "RESULTS.md").read_text()
    for row in ("| bootstrap |", "| stage1 |", "| stage2 |"):
        assert row in results
    # resuming at stage 3 (as users do) finds the finished training and redoes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in (sylber / "stage2" / "model.pt", sylber / "stage2" / "model.tuned.pt")}
    r2 = bash(SYNTH_RUN, *args, "--stage", "3", "--stop-stage", "3", cwd=tmp_path, timeout=600)
    assert r2.returncode == 0, r2.stdout[-4000:] + r2.stderr[-4000:]
    assert "stage 0:" not in r2.stdout
    ckpts = sorted((sylber / "stage2" / "checkpoints").glob("*"))
    assert ckpts, "training checkpoints kept for resume"
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
