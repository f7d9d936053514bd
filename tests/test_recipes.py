"""The bash recipes (egs/*/run.sh, recipes/sylber.sh), run as a user would.

Every run writes into tmp_path (``--data-root``/``--exp-root``) and starts from a cwd other
than the recipe's, so the tests also check that the recipes work from any directory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.slurm import DEFAULT_CONFIG

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


def test_pool_runs_n_at_once_and_reports_a_failure(tmp_path: Path) -> None:
    """utils/stages.sh pool_init/pool_run/pool_wait: at most N at once, env prefixes reach the command,
    a failed background command makes pool_wait false; N = 1 runs in the foreground."""
    script = tmp_path / "p.sh"
    script.write_text(f"""set -euo pipefail
. {REPO / 'utils' / 'stages.sh'}
pool_init 2
for i in 1 2 3; do
  MARK=$i pool_run {tmp_path}/log/p$i.log bash -c 'echo start $MARK >> {tmp_path}/order; sleep 0.3; echo end $MARK >> {tmp_path}/order; [[ $MARK != 2 ]]'
done
pool_wait || echo "pool failed"
pool_init 1
pool_run {tmp_path}/log/f.log echo foreground
pool_wait && echo "pool ok"
""")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pool failed" in r.stdout and "foreground" in r.stdout and "pool ok" in r.stdout
    order = (tmp_path / "order").read_text().split()
    events = [" ".join(order[i:i + 2]) for i in range(0, len(order), 2)]
    assert sorted(events[:2]) == ["start 1", "start 2"]  # two at once ...
    assert events.index("start 3") > min(events.index("end 1"), events.index("end 2"))  # ... the third waits
    assert "exit status 1; see" in r.stderr and "p2.log" in r.stderr

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
    # one bootstrap-segments call (logged in log/bootstrap.<set>.log) whose --cmd local launcher ran the 2 shards
    assert "bootstrap-segments" in (tmp_path / "exp" / "sylber" / "log" / "bootstrap.dev-clean.log").read_text()
    assert all((units / "log" / f"bootstrap-segments.{j}.log").is_file() for j in (0, 1))
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


# --------------------------------------------------------------------------- TTS recipes
# recipes/tts.sh and the TTS stages of egs/ljspeech and egs/synth, run against a stand-in
# `speechunits` (utils/path.sh takes $SPEECHUNITS_VENV/bin first) that records each call and
# makes only the files the recipes look at: the tests check the sequencing and the arguments of
# the TTS commands, not the commands themselves (tested in their own modules). Its `launch` records
# the call and then runs the command after `--` with the same stand-in (as the real one runs
# `python -m speechunits ARGS`), so a training shows as a `launch` line followed by its `train-*` line.
TTS_RUN = REPO / "recipes" / "tts.sh"
LJ_RUN = REPO / "egs" / "ljspeech" / "run.sh"

FAKE_SPEECHUNITS = r"""#!/usr/bin/env bash
line="speechunits$(printf ' %q' "$@")"   # shell-quoted: --cmd "slurm --mem 4G" stays one argument
echo "$line" >> "$FAKE_CALLS"            # one write per call (pooled trainings record at once)
verb="$1"; shift
get() {  # OPTION ARGS... -> the value after OPTION
  local want="$1"; shift
  while (( $# )); do [[ "$1" == "$want" ]] && { echo "$2"; return; }; shift; done
}
case "$verb" in
  synth-corpus) out=$(get --out "$@"); mkdir -p "$out/.synth/ljspeech"; echo '{}' > "$out/.synth/ljspeech/utterances.json"
    for task in lexical syntactic; do mkdir -p "$out/zerospeech2021/$task/dev"; : > "$out/zerospeech2021/$task/dev/gold.csv"; done ;;
  prepare-data) out=$(get --out "$@"); mkdir -p "$out"; echo '{}' > "$out/provenance.json" ;;
  phonemize) out=$(get --out "$@"); mkdir -p "$(dirname "$out")"; : > "$out" ;;
  train-tts)  # the model file holds the prosody kind of its config (none when the config has none)
    dir=$(get --out-dir "$@"); kind=$(sed -n 's/^ *kind: *\([A-Za-z]*\).*/\1/p' "$(get --config "$@")" | head -n 1)
    mkdir -p "$dir"; echo "${kind:-none}" > "$dir/model.pt" ;;
  tts-synthesize)
    out=$(get --out "$@"); mkdir -p "$out"; : > "$out/manifest.jsonl"
    printf '{"prosody": "%s"}\n' "$(cat "$(get --model "$@")")" > "$out/meta.json" ;;
  tts-evaluate|tts-results) out=$(get --out "$@"); mkdir -p "$(dirname "$out")"; echo '{}' > "$out" ;;
  tokenize|bootstrap-segments|frame-units) out=$(get --out "$@"); mkdir -p "$out"; : > "$out/units.jsonl" ;;
  cluster|lm-ngram|lm-probe) out=$(get --out "$@"); mkdir -p "$(dirname "$out")"; : > "$out" ;;
  lm-pack) out=$(get --out "$@"); mkdir -p "$(dirname "$out")"; : > "$out.json" ;;
  train-lm) dir=$(get --out-dir "$@"); mkdir -p "$dir"; : > "$dir/model.pt"; : > "$dir/model.best.pt" ;;
  lm-score|lm-continue|synthesize) mkdir -p "$(get --out "$@")" ;;
  quantize|lm-results) ;;
  launch)  # [options] -- ARGS: run ARGS (a speechunits command line) with this stand-in
    while (( $# )) && [[ "$1" != -- ]]; do shift; done
    (( $# )) || { echo "fake speechunits: launch without --" >&2; exit 2; }
    shift; exec "$0" "$@" ;;
  train-sylber|train-hubert|train-judge|train-vocoder)
    dir=$(get --out-dir "$@"); mkdir -p "$dir"; : > "$dir/model.pt"; : > "$dir/judge.pt"; : > "$dir/vocoder.pt" ;;
  extract-f0) mkdir -p "$(get --out "$@")" ;;
  slu-cil|slu-select|slu-results|probe-phones|tune-segmentation|eval-boundaries|results-table) ;;
  *) echo "fake speechunits: unexpected verb $verb" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose `speechunits` only records its calls in $FAKE_CALLS."""
    bin_dir = tmp_path / "fakevenv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "speechunits").write_text(FAKE_SPEECHUNITS)
    (bin_dir / "speechunits").chmod(0o755)
    return {"SPEECHUNITS_VENV": str(bin_dir.parent), "FAKE_CALLS": str(tmp_path / "calls.txt")}


def calls(env: dict[str, str], verb: str = "") -> list[list[str]]:
    """The recorded calls (as argument lists after the program name), those of ``verb`` when given."""
    path = Path(env["FAKE_CALLS"])
    rows = [shlex.split(line)[1:] for line in path.read_text().splitlines()] if path.is_file() else []
    return [r for r in rows if not verb or r[0] == verb]


def opt(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def tts_data(root: Path, *sets: str) -> Path:
    for s in sets:
        (root / s).mkdir(parents=True)
        (root / s / "provenance.json").write_text("{}")
    return root


def tts_args(tmp_path: Path, *extra: str) -> list[str]:
    conf = REPO / "recipes" / "conf"
    return ["--data-root", str(tmp_path / "data"), "--exp-dir", str(tmp_path / "exp"), "--train-set", "tr",
            "--valid-set", "va", "--test-set", "te",
            "--configs", f"baseline={conf / 'tts_tacotron2.yaml'} "
                         f"vt10={conf / 'tts_capacitron_vt.yaml'}:task.prosody.capacity=10:max_steps=7 "
                         f"hier={conf / 'tts_capacitron_hier.yaml'}", *extra]


def test_tts_recipe_help_lists_stages(tmp_path: Path) -> None:
    r = bash(TTS_RUN, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for n, verb in ((1, "phonemize"), (2, "train-tts"), (3, "tts-synthesize"), (4, "tts-evaluate"),
                    (5, "tts-results")):
        line = next(line for line in lines if line.lstrip().startswith(f"{n}  "))
        assert verb in line, (n, line)
    assert "RESULTS.md" in r.stdout and "style transfer" in r.stdout and "prior samples" in r.stdout
    for option in ("--configs", "--train-opts", "--ngpu", "--vocoder", "--judge", "--prosody-labels",
                   "--cmd (current: 'local')", "--train-cmd (current: 'local')", "--nnodes (current: '1')",
                   "--temperatures (current: '0.5 1.0')", "--seeds (current: '0 1 2')", "--num-test (current: '100')"):
        assert option in r.stdout, option
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("extra, message", [
    (["--test-set", ""], "give --train-set, --valid-set and --test-set"),
    (["--configs", ""], "give the models with --configs"),
    (["--configs", "baseline"], "'baseline' is not NAME=CONFIG"),
    (["--configs", "a=/no/such.yaml"], "config file of model 'a' not found: /no/such.yaml"),
    (["--configs", f"a={REPO}/recipes/conf/tts_tacotron2.yaml a={REPO}/recipes/conf/tts_tacotron2.yaml"],
     "model name 'a' is given twice"),
    (["--configs", f"a/b={REPO}/recipes/conf/tts_tacotron2.yaml"], "model name 'a/b'"),
    (["--configs", f"a={REPO}/recipes/conf/tts_tacotron2.yaml:max_steps"], "override 'max_steps' of model 'a'"),
    (["--temperatures", "0.5 hot"], "--temperatures: 'hot'"),
    (["--seeds", ""], "give at least one seed"),
    (["--seeds", "0 -1"], "--seeds: '-1'"),
    (["--num-test", "ten"], "--num-test must be"),
    (["--frontend", "graphemes"], "--frontend must be phonemes or characters"),
    (["--nnodes", "0"], "--nnodes must be a positive integer"),
    (["--ngpu", "two"], "--ngpu must be a non-negative integer"),
    (["--train-cmd", ""], "--train-cmd is empty"),
    (["--cmd", ""], "--cmd is empty"),
    (["--style-set", "te"], "--style-set must differ from --test-set"),
    (["--no-such-option", "1"], "unknown option --no-such-option"),
    (["extra-positional"], "unexpected arguments"),
])
def test_tts_recipe_rejects_bad_options(tmp_path: Path, fake_env: dict[str, str], extra: list[str],
                                        message: str) -> None:
    tts_data(tmp_path / "data", "tr", "va", "te")
    r = bash(TTS_RUN, *tts_args(tmp_path), *extra, cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert calls(fake_env) == [] and not (tmp_path / "exp").exists()


def test_tts_recipe_needs_data_dirs_and_earlier_stages(tmp_path: Path, fake_env: dict[str, str]) -> None:
    tts_data(tmp_path / "data", "tr", "te")  # no valid set
    r = bash(TTS_RUN, *tts_args(tmp_path), cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "data dir" in r.stderr and "/va is missing" in r.stderr and "run stage 0" in r.stderr
    assert calls(fake_env) == []
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stage", "2", cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "phonemes/tr.jsonl; it is made by stage 1" in r.stderr
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stage", "3", cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "baseline/model.pt; it is made by stage 2" in r.stderr
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stage", "4", cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "synth/baseline/transfer/meta.json; it is made by stage 3" in r.stderr
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stage", "3", "--vocoder", str(tmp_path / "no_vocoder.pt"),
             cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "no_vocoder.pt" in r.stderr
    assert calls(fake_env) == []


def test_tts_recipe_stages_and_arguments(tmp_path: Path, fake_env: dict[str, str]) -> None:
    data = tts_data(tmp_path / "data", "tr", "va", "te")
    exp = tmp_path / "exp"
    vocoder, judge, labels = tmp_path / "vocoder.pt", tmp_path / "judge.pt", tmp_path / "utterances.json"
    for f in (vocoder, judge, labels):
        f.write_text("x")
    extra = ["--vocoder", str(vocoder), "--judge", str(judge), "--prosody-labels", str(labels),
             "--train-opts", "seed=3", "--num-test", "5", "--device", "cpu"]
    r = bash(TTS_RUN, *tts_args(tmp_path), *extra, cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    for n in range(1, 6):
        assert f"stage {n}:" in r.stdout
    verbs = [c[0] for c in calls(fake_env)]
    assert verbs == ["phonemize"] * 3 + ["launch", "train-tts"] * 3 + ["tts-synthesize"] * 11 + ["tts-evaluate"] * 11 \
        + ["tts-results"], verbs
    # stage 1: each set once (the valid set is also the style references)
    assert [opt(c, "--out") for c in calls(fake_env, "phonemize")] == [str(exp / "phonemes" / f"{s}.jsonl")
                                                                        for s in ("tr", "va", "te")]
    # stage 2: every model with the data, the phonemes, its own overrides, then the common ones
    trains = {opt(c, "--out-dir"): c for c in calls(fake_env, "train-tts")}
    assert list(trains) == [str(exp / n) for n in ("baseline", "vt10", "hier")]
    vt10 = trains[str(exp / "vt10")]
    assert vt10[-3:] == ["task.prosody.capacity=10", "max_steps=7", "seed=3"]
    for c in trains.values():
        assert f"task.train={data / 'tr'}" in c and f"task.valid_symbols={exp / 'phonemes' / 'va.jsonl'}" in c
        assert "task.frontend.kind=phonemes" in c and opt(c, "--resume") == "auto" and opt(c, "--device") == "cpu"
    assert "task.prosody.capacity=10" not in trains[str(exp / "hier")]
    # stage 3: prior samples per temperature, transfer, and style only for models with a prosody embedding
    synth = {opt(c, "--out"): c for c in calls(fake_env, "tts-synthesize")}
    expected = [f"{n}/{row}" for n in ("baseline", "vt10", "hier")
                for row in ("text_t0.5", "text_t1.0", "transfer") + (("style",) if n != "baseline" else ())]
    assert sorted(synth) == sorted(str(exp / "synth" / e) for e in expected)
    for out, c in synth.items():
        assert opt(c, "--data") == str(data / "te") and opt(c, "--max-utts") == "5"
        assert opt(c, "--vocoder") == str(vocoder) and opt(c, "--model").endswith("/model.pt")
        mode = opt(c, "--mode")
        assert out.endswith({"text": f"text_t{opt(c, '--temperature') if mode == 'text' else ''}",
                             "transfer": "transfer", "style": "style"}[mode])
        assert opt(c, "--seeds") == ("0,1,2" if mode == "text" else "0")
        assert (opt(c, "--style-data") == str(data / "va")) if mode == "style" else "--style-data" not in c
    assert "baseline has no prosody embedding" in r.stdout
    # stage 4: one report per synthesis dir; style rows are scored against the test set (the recording of the
    # text) and their references (the valid set)
    evals = {opt(c, "--synth"): c for c in calls(fake_env, "tts-evaluate")}
    assert sorted(evals) == sorted(synth)
    for d, c in evals.items():
        refs = c[c.index("--references") + 1:c.index("--references") + (3 if d.endswith("style") else 2)]
        assert refs == [str(data / "te")] + ([str(data / "va")] if d.endswith("style") else [])
        assert opt(c, "--judge") == str(judge) and opt(c, "--prosody-labels") == str(labels)
        name, row = Path(d).parent.name, Path(d).name
        assert opt(c, "--out") == str(exp / "eval" / name / f"{row}.json")
    # stage 5: every report under <model>/<row>
    (results,) = calls(fake_env, "tts-results")
    reports = results[results.index("--reports") + 1:results.index("--out")]
    assert sorted(reports) == sorted(f"{Path(d).parent.name}/{Path(d).name}="
                                     f"{exp / 'eval' / Path(d).parent.name / Path(d).name}.json" for d in synth)
    assert opt(results, "--out") == str(exp / "RESULTS.md") and opt(results, "--figures") == str(exp / "figures")
    assert opt(results, "--attention") == str(exp / "synth" / "hier" / "transfer")  # the last model by default
    contours = results[results.index("--contours") + 1:]
    assert contours == [str(exp / "synth" / "hier" / f"text_t{t}") for t in ("0.5", "1.0")]
    assert (exp / "log" / "train.vt10.log").is_file() and (exp / "log" / "synth.hier.style.log").is_file()
    assert (exp / "log" / "eval.baseline.text_t0.5.log").is_file()


def test_tts_recipe_stage_range_and_launch(tmp_path: Path, fake_env: dict[str, str]) -> None:
    tts_data(tmp_path / "data", "tr", "va", "te")
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stop-stage", "1", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stderr
    assert {c[0] for c in calls(fake_env)} == {"phonemize"}
    Path(fake_env["FAKE_CALLS"]).unlink()
    r = bash(TTS_RUN, *tts_args(tmp_path), "--stage", "2", "--stop-stage", "2", "--ngpu", "2", "--temperatures",
             "0.7", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stderr
    rows = calls(fake_env)
    assert len(rows) == 6 and [r[0] for r in rows] == ["launch", "train-tts"] * 3, rows
    exp = tmp_path / "exp"
    for name, (launch, train) in zip(("baseline", "vt10", "hier"), zip(rows[::2], rows[1::2])):
        # each training one `speechunits launch` (torchrun on 2 GPUs is its business), the command after `--`
        assert launch[:launch.index("--")] == ["launch", "--cmd", "local", "--ngpu", "2", "--nnodes", "1",
                                               "--log", str(exp / "log" / f"train.{name}.slurm.log")]
        assert launch[launch.index("--") + 1:] == train and opt(train, "--out-dir") == str(exp / name)
    assert (exp / "log" / "train.vt10.log").is_file()  # run_logged's log as before
    assert "stage 1:" not in r.stdout and "stage 3:" not in r.stdout


@pytest.mark.parametrize("script", [SYNTH_RUN, LJ_RUN])
def test_egs_help_lists_tts_stages(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = 14 if script == SYNTH_RUN else 8
    assert f"With --tts true, stages {first}-{first + 4 + (script == SYNTH_RUN)}" in r.stdout
    for n in range(first, first + 5):
        assert any(line.lstrip().startswith(f"{n} ") for line in r.stdout.splitlines()), n
    assert "recipes/tts.sh" in r.stdout and "--tts (current: 'false')" in r.stdout
    assert "--tts-capacities (current: '10 50 150')" in r.stdout


def test_synth_tts_stages_drive_the_tts_recipe(tmp_path: Path, fake_env: dict[str, str]) -> None:
    """egs/synth --tts true: the kal LJSpeech-shaped corpus, its chapter split, the five tiny models."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    args = ["--tiny", "true", "--tts", "true", "--stage", "14", "--data-root", str(data), "--exp-root", str(exp)]
    r = bash(SYNTH_RUN, *args, "--tts-utts", "150", cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and "--tts-utts must be more than 200" in r.stderr
    assert calls(fake_env) == []
    r = bash(SYNTH_RUN, *args, cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    (corpus,) = calls(fake_env, "synth-corpus")
    assert opt(corpus, "--layout") == "ljspeech" and opt(corpus, "--voice") == "kal"
    assert opt(corpus, "--num-utts") == "203" and opt(corpus, "--out") == str(data / "corpora_tts")
    prepared = {opt(c, "--split"): opt(c, "--out") for c in calls(fake_env, "prepare-data")}
    assert prepared == {s: str(data / f"tts_{s}") for s in ("train", "valid", "test")}
    trains = {Path(opt(c, "--out-dir")).name: c for c in calls(fake_env, "train-tts")}
    assert sorted(trains) == sorted(["baseline", "vt10", "vt50", "vt150", "hier"])  # trained at once (--tts-train-nj)
    for name, c in trains.items():
        conf = {"baseline": "baseline", "hier": "hier"}.get(name, "vt")
        assert opt(c, "--config") == f"conf/tts_{conf}_tiny.yaml" and opt(c, "--out-dir") == str(exp / "tts" / name)
        capacity = [a for a in c if a.startswith("task.prosody.capacity=")]
        assert capacity == ([f"task.prosody.capacity={name[2:]}"] if conf == "vt" else [])
        assert (REPO / "egs" / "synth" / opt(c, "--config")).is_file()
    synth = calls(fake_env, "tts-synthesize")
    assert all(opt(c, "--max-utts") == "2" and "--vocoder" not in c for c in synth)  # Griffin-Lim: no stage 10
    assert "vocoder Griffin-Lim" in r.stdout and "judge: none" in r.stdout
    labels = str(data / "corpora_tts" / ".synth" / "ljspeech" / "utterances.json")
    assert all(opt(c, "--prosody-labels") == labels and "--judge" not in c for c in calls(fake_env, "tts-evaluate"))
    assert (exp / "tts" / "RESULTS.md").is_file()
    # with the unit-to-speech judge present, the TTS rows use it (and its vocoder with --tts-vocoder unit2speech);
    # --stage 17 resumes at synthesis
    for f in ("vocoder_mel/vocoder.pt", "judge/judge.pt"):
        (exp / "unit2speech" / f).parent.mkdir(parents=True)
        (exp / "unit2speech" / f).write_text("x")
    Path(fake_env["FAKE_CALLS"]).unlink()
    r = bash(SYNTH_RUN, *args, "--stage", "17", "--stop-stage", "18", "--tts-capacities", "50",
             "--tts-vocoder", "unit2speech", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {c[0] for c in calls(fake_env)} == {"tts-synthesize", "tts-evaluate"}
    assert {Path(opt(c, "--model")).parent.name for c in calls(fake_env, "tts-synthesize")} == {"baseline", "vt50", "hier"}
    assert all(opt(c, "--vocoder") == str(exp / "unit2speech" / "vocoder_mel" / "vocoder.pt")
               for c in calls(fake_env, "tts-synthesize"))
    assert all(opt(c, "--judge") == str(exp / "unit2speech" / "judge" / "judge.pt")
               for c in calls(fake_env, "tts-evaluate"))


def test_ljspeech_tts_stages_use_the_paper_configs(tmp_path: Path, fake_env: dict[str, str]) -> None:
    data, exp = tts_data(tmp_path / "data", "train", "valid", "test"), tmp_path / "exp"
    r = bash(LJ_RUN, "--tts", "true", "--stage", "8", "--stop-stage", "9", "--data-root", str(data), "--exp-root",
             str(exp), "--tts-capacities", "150", "--tts-hier-config", "", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [opt(c, "--data") for c in calls(fake_env, "phonemize")] == [str(data / s) for s in ("train", "valid", "test")]
    trains = {Path(opt(c, "--out-dir")).name: c for c in calls(fake_env, "train-tts")}
    assert list(trains) == ["baseline", "vt150"]
    assert opt(trains["baseline"], "--config") == "../../recipes/conf/tts_tacotron2.yaml"
    assert opt(trains["vt150"], "--config") == "../../recipes/conf/tts_capacitron_vt.yaml"
    assert "task.prosody.capacity=150" in trains["vt150"] and not calls(fake_env, "tts-synthesize")
    assert "stage 7:" not in r.stdout  # the unit-to-speech stages are not rerun


@pytest.mark.parametrize("conf", sorted((REPO / "recipes" / "conf").glob("tts_*.yaml"))
                         + sorted((REPO / "egs" / "synth" / "conf").glob("tts_*_tiny.yaml")), ids=lambda p: p.name)
def test_tts_configs_keys(conf: Path) -> None:
    """Every TTS config loads into the real trainer config, task options and model config (no key is a typo
    that would be silently ignored), one prosody kind each, with the mels of the vocoder it is meant for."""
    import yaml

    from speechunits.train.config import load_config
    from speechunits.tts.config import TTSConfig
    from speechunits.tts.task import DEFAULTS

    cfg = load_config(conf)
    task = cfg.task
    assert set(task) <= set(DEFAULTS), set(task) - set(DEFAULTS)
    model = TTSConfig(mel=dict(task["mel"]), tacotron={**dict(task["model"]), "num_symbols": 40},
                      prosody=dict(task.get("prosody") or {}))
    assert model.prosody.kind in ("none", "VT", "hierarchical") and model.tacotron.attention in ("location", "dynamic_conv")
    vocoder = (REPO / "recipes" / "conf" / "vocoder_hifigan_v1.yaml" if conf.parent.name == "conf"
               and conf.parent.parent.name == "recipes" else REPO / "egs" / "synth" / "conf" / "vocoder_mel_tiny.yaml")
    assert dict(task["mel"]) == yaml.safe_load(vocoder.read_text())["task"]["model"]["mel"]
    assert cfg.nonfinite == "skip" and cfg.max_steps > 0


# --------------------------------------------------------------------------- lm/run.sh
LM_RUN = REPO / "lm" / "run.sh"


def lm_args(tmp_path: Path, *extra: str) -> list[str]:
    for name in ("sylber.pt", "km.pt", "frames_km.pt", "vocoder.pt"):
        (tmp_path / name).write_text("x")
    tts_data(tmp_path / "data", "tr", "va", "te")
    return ["--data-root", str(tmp_path / "data"), "--train-set", "tr", "--valid-set", "va", "--test-sets", "te",
            "--name", "t", "--exp-root", str(tmp_path / "exp"), "--sylber-model", str(tmp_path / "sylber.pt"), "--sylber-codebook", str(tmp_path / "km.pt"),
            "--frame-codebook", str(tmp_path / "frames_km.pt"), "--vocoder", str(tmp_path / "vocoder.pt"), *extra]


def test_lm_recipe_help_lists_stages(tmp_path: Path) -> None:
    r = bash(LM_RUN, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for n, verb in ((0, "zr2021"), (1, "tokenize"), (2, "lm-pack"), (3, "train-lm"), (4, "lm-score"),
                    (5, "lm-continue"), (6, "lm-results")):
        line = next(line for line in lines if line.lstrip().startswith(f"{n}  "))
        assert verb in line, (n, line)
    assert "--token-budget (current: '1000000')" in r.stdout and "--probe-dir" in r.stdout


@pytest.mark.parametrize("extra, message", [
    (["--tokenizers", "sylber hubert"], "unknown 'hubert'"),
    (["--token-budget", "0"], "--token-budget must be a positive integer"),
    (["--probe-score", "median"], "--probe-score must be sum or mean"),
    (["--lm-model", "first"], "--lm-model must be best or last"),
    (["--test-sets", ""], "--test-sets is empty"),
    (["--nnodes", "two"], "--nnodes must be a positive integer"),
    (["extra-positional"], "unexpected arguments"),
])
def test_lm_recipe_rejects_bad_options(tmp_path: Path, fake_env: dict[str, str], extra: list[str], message: str) -> None:
    r = bash(LM_RUN, *lm_args(tmp_path), *extra, cwd=tmp_path, env=fake_env)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert calls(fake_env) == []


def test_lm_recipe_stages_and_arguments(tmp_path: Path, fake_env: dict[str, str]) -> None:
    r = bash(LM_RUN, *lm_args(tmp_path, "--token-budget", "5000", "--device", "cpu"), cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    exp = tmp_path / "exp" / "t"
    sets = ["tr", "va", "te", "lexical", "syntactic"]
    pack = calls(fake_env, "lm-pack")
    assert [opt(c, "--out") for c in pack] == [str(exp / t / "packed" / s)
                                               for t in ("sylber", "bootstrap", "frames") for s in sets]
    assert {opt(c, "--dedup") for c in pack[:10]} == {"false"} and {opt(c, "--dedup") for c in pack[10:]} == {"true"}
    boot = [c for c in calls(fake_env, "tokenize") if "--segments" in c]
    assert len(boot) == 5 and opt(boot[0], "--segments") == str(exp / "units" / "bootstrap_segments" / "tr")
    assert all(opt(c, "--codebook") == str(tmp_path / "km.pt") for c in calls(fake_env, "quantize")[:5])
    trains = calls(fake_env, "train-lm")
    assert len(trains) == 3 and all(opt(c, "--token-budget") == "5000" and opt(c, "--device") == "cpu" for c in trains)
    assert len(calls(fake_env, "lm-ngram")) == 3
    scored = [opt(c, "--data").split("/")[-1] for c in calls(fake_env, "lm-score")]
    assert scored == ["te", "lexical", "syntactic"] * 6  # 3 tokenizers x (LM, n-gram)
    assert len(calls(fake_env, "lm-probe")) == 12
    cont = calls(fake_env, "lm-continue")[0]
    assert opt(cont, "--model") == str(exp / "sylber" / "lm" / "model.best.pt")  # --lm-model best (default)
    assert {opt(c, "--model").split("/")[-1] for c in calls(fake_env, "lm-score")} == {"model.best.pt", "ngram.json"}
    assert opt(cont, "--units") == str(exp / "units" / "sylber" / "te")
    assert opt(calls(fake_env, "synthesize")[0], "--durations") == "predicted"
    assert opt(calls(fake_env, "lm-results")[0], "--test-sets") == "te"


# --------------------------------------------------------------------------- job dispatch (--cmd, --train-cmd)
# Every sharded corpus command of a recipe gets --cmd, every training goes through `speechunits launch`
# with --train-cmd, --ngpu and --nnodes; egs/<corpus>/cmd.sh sets the defaults from SPEECHUNITS_CMD_BACKEND.
SHARDED = {"tokenize", "frame-units", "bootstrap-segments", "synth-corpus", "extract-f0", "synthesize",
           "tts-synthesize"}
CMD_DIRS = [REPO / "egs" / c for c in ("synth", "librispeech", "ljspeech", "speechocean762", "fsc", "slurp")] \
    + [REPO / "lm"]
SLURM_CONF_RULES = "".join(line + "\n" for line in DEFAULT_CONFIG.splitlines() if line and not line.startswith("#"))
"""The rules every shipped conf/slurm.conf holds: those of the built-in default."""


def check_dispatch(rows: list[list[str]], cmd: str, train_cmd: str, ngpu: str, nnodes: str) -> dict[str, list[str]]:
    """Every sharded call carries ``--cmd cmd``; every ``train-*``/``slu-cil`` training comes right after a
    ``launch --cmd train_cmd --ngpu --nnodes --log ... -- <that call>``. Returns the launches by --log file."""
    launches: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        if row[0] in SHARDED and "--nj" in row:
            assert opt(row, "--cmd") == cmd, row
        if row[0] == "launch":
            sep = row.index("--")
            assert row[:sep - 2] == ["launch", "--cmd", train_cmd, "--ngpu", ngpu, "--nnodes", nnodes], row
            assert row[sep - 2] == "--log" and row[sep - 1].endswith(".slurm.log"), row
            assert row[sep + 1:] in rows[i + 1:], row  # the command it ran (background runs may interleave)
            launches[row[sep - 1]] = row[sep + 1:]
        if row[0].startswith("train-") or (row[0] == "slu-cil" and "--prepare-only" not in row):
            assert any(r[0] == "launch" and r[r.index("--") + 1:] == row for r in rows[:i]), row
    return launches


def test_synth_job_options_reach_the_calls(tmp_path: Path, fake_env: dict[str, str]) -> None:
    """egs/synth/run.sh --cmd/--train-cmd/--nnodes: synth-corpus, bootstrap-segments, tokenize get --cmd;
    both Sylber trainings are `speechunits launch --cmd <train-cmd> --nnodes 2 ... -- train-sylber ...`."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    r = bash(SYNTH_RUN, "--tiny", "true", "--layouts", "librispeech", "--stop-stage", "4", "--tune-thresholds", "false",
             "--data-root", str(data), "--exp-root", str(exp), "--cmd", "slurm --mem 4G",
             "--train-cmd", "slurm --time 1:00:00", "--nnodes", "2", "--ngpu", "1", cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = calls(fake_env)
    launches = check_dispatch(rows, "slurm --mem 4G", "slurm --time 1:00:00", "1", "2")
    log = exp / "sylber" / "log"
    assert list(launches) == [str(log / "stage1.slurm.log"), str(log / "stage2.slurm.log")]
    for name, args in zip(("stage1", "stage2"), launches.values()):
        assert args[0] == "train-sylber" and opt(args, "--out-dir") == str(exp / "sylber" / name)
        assert opt(args, "--resume") == "auto"
        assert (log / f"{name}.log").is_file()  # run_logged's log around the launch
    assert [opt(c, "--cmd") for c in calls(fake_env, "synth-corpus")] == ["slurm --mem 4G"]
    boots = calls(fake_env, "bootstrap-segments")
    assert len(boots) == 3 and not any("--job" in c for c in boots)  # one call per set: its launcher runs the shards
    assert len(calls(fake_env, "tokenize")) == 5  # stage 1 and stage 2 models; the train set with the final one
    assert all(opt(c, "--cmd") == "slurm --mem 4G" for c in calls(fake_env) if c[0] in SHARDED)


@pytest.mark.parametrize("recipe", ["tts", "lm", "unit2speech", "hubert", "slu_cil"])
def test_recipe_job_options_reach_the_calls(tmp_path: Path, fake_env: dict[str, str], recipe: str) -> None:
    """Each recipe that trains: --cmd on its sharded calls, trainings through launch with --train-cmd/--nnodes."""
    jobs = ["--cmd", "slurm --mem 4G --max-jobs-run 3", "--train-cmd", "slurm --time 1:00:00", "--nnodes", "2",
            "--ngpu", "4"]
    data, exp = tmp_path / "data", tmp_path / "exp"
    if recipe == "tts":
        tts_data(data, "tr", "va", "te")
        script, args = TTS_RUN, tts_args(tmp_path, "--train-nj", "2")
    elif recipe == "lm":
        script, args = LM_RUN, lm_args(tmp_path, "--train-nj", "2", "--stop-stage", "5")
    elif recipe == "unit2speech":
        tts_data(data, "tr", "va", "te")
        (tmp_path / "tok.pt").write_text("x")
        script = REPO / "recipes" / "unit2speech.sh"
        args = ["--data-root", str(data), "--exp-dir", str(exp), "--train-set", "tr", "--valid-set", "va",
                "--test-set", "te", "--f0", "true", "--units-config", "u.yaml", "--tokenizer", str(tmp_path / "tok.pt"),
                "--syllables-config", "s.yaml", "--syllable-units", str(tmp_path / "su"),
                "--syllable-model", str(tmp_path / "tok.pt"), "--stop-stage", "6"]
    elif recipe == "hubert":
        tts_data(data, "tr", "va")
        script = REPO / "recipes" / "hubert.sh"
        args = ["--data-root", str(data), "--exp-dir", str(exp), "--train-set", "tr", "--valid-set", "va",
                "--stop-stage", "4"]
    else:
        tts_data(data, "tr", "va", "te")
        (tmp_path / "slu.yaml").write_text("benchmark: x\n")
        script = REPO / "recipes" / "slu_cil.sh"
        args = ["--slu-config", str(tmp_path / "slu.yaml"), "--data-root", str(data), "--exp-dir", str(exp),
                "--train-set", "tr", "--valid-set", "va", "--test-set", "te", "--methods", "ft coconut",
                "--sweep", "a=losses.mm=0.1", "--nj", "2"]
        jobs = jobs[2:]  # no sharded command: no --cmd
    r = bash(script, *args, *jobs, cwd=tmp_path, env=fake_env)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = calls(fake_env)
    launches = check_dispatch(rows, "slurm --mem 4G --max-jobs-run 3", "slurm --time 1:00:00", "4", "2")
    # unit2speech: judge and 3 vocoders; slu_cil: the first tasks, the sweep run and 2 method runs
    trained = {"tts": 3, "lm": 3, "unit2speech": 4, "hubert": 2, "slu_cil": 4}[recipe]
    assert len(launches) == trained, list(launches)
    if recipe != "slu_cil":
        assert any(c[0] in SHARDED for c in rows)
    for log in launches:  # the --log of a launch sits next to the run_logged log of the same training
        assert Path(log.replace(".slurm.log", ".log")).is_file(), log


@pytest.mark.parametrize("script", [LIBRI_RUN, LJ_RUN, SYNTH_RUN, REPO / "egs" / "synth" / "run_slu.sh",
                                    REPO / "egs" / "speechocean762" / "run.sh", REPO / "egs" / "fsc" / "run.sh",
                                    REPO / "egs" / "slurp" / "run.sh", LM_RUN])
def test_egs_help_lists_the_job_options(tmp_path: Path, script: Path) -> None:
    r = bash(script, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for option in ("--cmd (current: 'local')", "--train-cmd (current: 'local')", "--nnodes (current: '1')",
                   "--ngpu (current: ", "SPEECHUNITS_CMD_BACKEND"):
        assert option in r.stdout, option
    assert "--cmd-backend" not in r.stdout  # cmd.sh's variable is not an option


@pytest.mark.parametrize("folder", CMD_DIRS, ids=lambda p: p.name)
def test_cmd_sh_backends(tmp_path: Path, folder: Path) -> None:
    """cmd.sh: local by default, slurm commands with SPEECHUNITS_CMD_BACKEND=slurm, a clear error otherwise;
    conf/slurm.conf next to it holds the Kaldi slurm.pl rules."""
    probe = 'set -eu; . ./cmd.sh; printf "%s\\n" "$cmd" "$train_cmd" "${cmd_backend-unset}"'

    def source(backend: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SPEECHUNITS_CMD_BACKEND"}
        if backend is not None:
            env["SPEECHUNITS_CMD_BACKEND"] = backend
        return subprocess.run(["bash", "-c", probe], cwd=folder, env=env, capture_output=True, text=True, timeout=30)

    for backend in (None, "", "local"):
        r = source(backend)
        assert r.returncode == 0 and r.stdout.split("\n")[:3] == ["local", "local", "unset"], (backend, r)
    r = source("slurm")
    assert r.returncode == 0, r.stderr
    cmd, train_cmd, _ = r.stdout.split("\n", 2)
    assert cmd.startswith("slurm --") and train_cmd.startswith("slurm --") and "--time" in train_cmd
    r = source("sge")
    assert r.returncode != 0 and "unknown job backend 'sge'" in r.stderr and "local or slurm" in r.stderr
    conf = (folder / "conf" / "slurm.conf").read_text()
    assert conf.startswith("# Kaldi slurm.pl format")
    assert "".join(line + "\n" for line in conf.splitlines() if line and not line.startswith("#")) == SLURM_CONF_RULES


def test_synth_run_takes_its_defaults_from_cmd_sh(tmp_path: Path, fake_env: dict[str, str]) -> None:
    args = ["--tiny", "true", "--layouts", "fsc", "--stop-stage", "0", "--data-root", str(tmp_path / "d"),
            "--exp-root", str(tmp_path / "e")]
    r = bash(SYNTH_RUN, *args, cwd=tmp_path, env=fake_env | {"SPEECHUNITS_CMD_BACKEND": "slurm"})
    assert r.returncode == 0, r.stdout + r.stderr
    slurm_cmd = subprocess.run(["bash", "-c", ". ./cmd.sh; echo \"$cmd\""], cwd=REPO / "egs" / "synth",
                               env=os.environ | {"SPEECHUNITS_CMD_BACKEND": "slurm"}, capture_output=True,
                               text=True).stdout.strip()
    assert slurm_cmd.startswith("slurm ")
    assert [opt(c, "--cmd") for c in calls(fake_env, "synth-corpus")] == [slurm_cmd]
    Path(fake_env["FAKE_CALLS"]).unlink()
    r = bash(SYNTH_RUN, *args, "--cmd", "local", cwd=tmp_path, env=fake_env | {"SPEECHUNITS_CMD_BACKEND": "slurm"})
    assert r.returncode == 0 and [opt(c, "--cmd") for c in calls(fake_env, "synth-corpus")] == ["local"]
    Path(fake_env["FAKE_CALLS"]).unlink()
    r = bash(SYNTH_RUN, *args, cwd=tmp_path, env=fake_env | {"SPEECHUNITS_CMD_BACKEND": "pbs"})
    assert r.returncode != 0 and "unknown job backend 'pbs'" in r.stderr
    assert calls(fake_env) == []
