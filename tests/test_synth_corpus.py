"""Synthetic corpora (speechunits.data.synth): real loaders read them, timings are Festival's own; they run
on the sharded-job runner: identical for any --nj, resumed after a kill, a failing utterance listed bad."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.audio import load_audio
from speechunits.cli import main as cli_main
from speechunits.data.alignments import is_silence, read_textgrid
from speechunits.data.corpora import load_fsc, load_librispeech, load_ljspeech
from speechunits.data.synth import corpus_job, layouts, synthesize_fsc, synthesize_librispeech, synthesize_ljspeech
from speechunits.data.synth.synth_cli import parse_splits
from speechunits.data.synth.festival import (
    FestivalRequest,
    FestivalResult,
    prosody_commands,
    scheme_string,
    synthesize_batch,
    synthesize_each,
)
from speechunits.data.synth.text import librispeech_transcript, unique_sentences
from speechunits.data.synth.voices import Speaker
from speechunits.errors import ConfigError, ExternalToolError
from speechunits.jobs import DELAY_ENV

SPLITS = {"train-clean-100": 4, "dev-clean": 2}
REPO = Path(__file__).resolve().parents[1]
REAL_WHICH = shutil.which


@pytest.fixture(scope="module")
def libri(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_librispeech(out, SPLITS, seed=3, nj=1)
    return out


def _speakers(out: Path, layout: str) -> dict[str, Speaker]:
    return {d["id"]: Speaker(**d) for d in json.loads((out / ".synth" / layout / "speakers.json").read_text())}


@pytest.mark.festival
def test_librispeech_layout_read_by_real_loader(libri: Path) -> None:
    by_split = {s: load_librispeech(libri / "LibriSpeech", s, alignments_dir=libri / "alignments") for s in SPLITS}
    assert {s: len(u) for s, u in by_split.items()} == SPLITS
    spk = {s: {u.speaker for u in utts} for s, utts in by_split.items()}
    assert not spk["train-clean-100"] & spk["dev-clean"]
    texts = {s: {u.text for u in utts} for s, utts in by_split.items()}
    assert not texts["train-clean-100"] & texts["dev-clean"]
    voices = {_speakers(libri, "librispeech")[s].voice for s in spk["train-clean-100"] | spk["dev-clean"]}
    assert len(voices) >= 2
    speakers_txt = (libri / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    for utts in by_split.values():
        for u in utts:
            assert u.text == u.text.upper() and "," not in u.text and "." not in u.text
            assert 4 <= len(u.text.split()) <= 15
            assert sf.info(u.audio).samplerate == 16000 and u.audio.endswith(".flac")
            tiers = read_textgrid(u.extra["alignment"])
            assert set(tiers) == {"words", "syllables", "phones"}
            words = [iv.label for iv in tiers["words"] if not is_silence(iv.label)]
            assert " ".join(words).upper() == u.text.replace("-", " ")
            assert f"\n{u.speaker} " in speakers_txt


@pytest.mark.festival
def test_durations_consistent_with_timings(libri: Path) -> None:
    for split in SPLITS:
        for u in load_librispeech(libri / "LibriSpeech", split, alignments_dir=libri / "alignments"):
            info = sf.info(u.audio)
            tiers = read_textgrid(u.extra["alignment"])
            phones = tiers["phones"]
            assert tiers["syllables"][-1].end == pytest.approx(info.duration, abs=1e-3)  # grid spans the audio
            last_festival = max(iv.end for iv in phones if iv.label)  # last real segment (pau included)
            # diphone voices overrun the final pause by one analysis frame (~25 ms); HTS is exact
            assert abs(info.duration - last_festival) < 0.03


@pytest.mark.festival
def test_textgrid_syllables_equal_fresh_festival_run(libri: Path, tmp_path: Path) -> None:
    speakers = _speakers(libri, "librispeech")
    utt = load_librispeech(libri / "LibriSpeech", "dev-clean", alignments_dir=libri / "alignments")[0]
    text = json.loads((libri / ".synth" / "librispeech" / "utterances.json").read_text())[utt.id]["text"]
    assert librispeech_transcript(text) == utt.text
    script = tmp_path / "one.scm"
    script.write_text(
        f"{prosody_commands(speakers[utt.speaker])}\n"
        f"(set! u (utt.synth (eval (list 'Utterance 'Text {scheme_string(text)}))))\n"
        "(mapcar (lambda (s) (format t \"%f %f\\n\" (item.feat s \"syllable_start\") (item.feat s \"syllable_end\")))"
        " (utt.relation.items u 'Syllable))\n"
    )
    proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=60, check=True)
    expected = [tuple(float(x) for x in line.split()) for line in proc.stdout.split("\n") if line.strip()]
    got = [(iv.start, iv.end) for iv in read_textgrid(utt.extra["alignment"])["syllables"] if iv.label]
    assert len(expected) >= 4
    assert got == expected
    syl_labels = [iv.label for iv in read_textgrid(utt.extra["alignment"])["syllables"] if iv.label]
    assert all(lab.replace("-", "").isalnum() for lab in syl_labels) and any("-" in lab for lab in syl_labels)


def _f0_median(wav: np.ndarray, sr: int) -> float:
    """Median F0 of voiced 40 ms frames by autocorrelation (60-400 Hz)."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    level = 0.03 * np.abs(wav).max()
    f0s = []
    for i in range(0, len(wav) - frame, hop):
        x = wav[i : i + frame] - wav[i : i + frame].mean()
        if np.sqrt(np.mean(x**2)) < level:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = sr // 400, sr // 60
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.5 * ac[0]:
            f0s.append(sr / k)
    assert len(f0s) > 20
    return float(np.median(f0s))


@pytest.mark.festival
def test_prosody_changes_f0_and_duration() -> None:
    text = "The gentle farmer carried a heavy basket across the narrow bridge."
    low = Speaker("a", "festival", "kal", "M", stretch=0.8, f0_mean=80.0, f0_std=10.0)
    high = Speaker("b", "festival", "kal", "M", stretch=1.3, f0_mean=150.0, f0_std=10.0)
    slow_slt = Speaker("c", "festival", "slt", "F", stretch=1.3)
    fast_slt = Speaker("d", "festival", "slt", "F", stretch=0.8)
    res = synthesize_batch([FestivalRequest(s.id, text, s) for s in (low, high, slow_slt, fast_slt)])
    f_low, f_high = _f0_median(res[0].wav, 16000), _f0_median(res[1].wav, 16000)
    assert f_high / f_low > 1.5, (f_low, f_high)
    for fast, slow in ((res[0], res[1]), (res[3], res[2])):
        # the stretch changes audio and timings consistently (1.3 / 0.8 = 1.625)
        assert slow.duration / fast.duration == pytest.approx(slow.phones[-1].end / fast.phones[-1].end, rel=0.02)
        assert slow.phones[-1].end / fast.phones[-1].end > 1.4


@pytest.mark.festival
def test_ljspeech_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["synth-corpus", "--layout", "ljspeech", "--out", str(tmp_path), "--num-utts", "3", "--voice", "kal"])
    assert rc == 0
    root = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert root == tmp_path / "LJSpeech-1.1"
    utts = load_ljspeech(root)
    assert [u.id for u in utts] == ["LJ001-0001", "LJ001-0002", "LJ001-0003"]
    for u in utts:
        assert sf.info(u.audio).samplerate == 22050
        assert (tmp_path / "alignments" / "ljspeech" / f"{u.id}.TextGrid").is_file()
    assert len((root / "metadata.csv").read_text().splitlines()) == 3


@pytest.mark.festival
def test_fsc_layout_with_commas_and_espeak(tmp_path: Path) -> None:
    root = synthesize_fsc(tmp_path, num_speakers=4, utts_per_speaker=4, seed=1)
    spk = _speakers(tmp_path, "fsc")
    assert {s.engine for s in spk.values()} == {"festival", "espeak"}
    seen: dict[str, set[str]] = {}
    n_comma = 0
    for split in ("train", "valid", "test"):
        csv_path = root / "data" / f"{split}_data.csv"
        assert csv_path.read_text().splitlines()[0] == ",path,speakerId,transcription,action,object,location"
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        utts = load_fsc(root, split)
        assert len(utts) == len(rows)
        by_path = {Path(u.audio).relative_to(root).as_posix(): u for u in utts}
        for row in rows:
            u = by_path[row[1]]
            assert (u.text, u.extra["action"], u.extra["object"], u.extra["location"]) == tuple(row[3:])
            n_comma += "," in u.text
            assert sf.info(u.audio).samplerate == 16000
        seen[split] = {u.speaker for u in utts}
    assert n_comma >= 1
    assert all(seen.values()) and not (seen["train"] & seen["valid"] or seen["train"] & seen["test"] or seen["valid"] & seen["test"])
    assert len(layouts.fsc_intents()) == 31


def _corpus_files(out: Path) -> dict[str, bytes]:
    """Every file of a generated output but those that record when and how it ran (provenance, job logs)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "provenance.json" and "log" not in p.relative_to(out).parts}


@pytest.mark.festival
@pytest.mark.slow
def test_deterministic_across_nj(libri: Path, tmp_path: Path) -> None:
    """--nj 2 runs two local synth-corpus jobs; every file (audio, TextGrids, transcripts, speakers, records of
    the plan) is byte for byte the one nj=1 wrote in this process."""
    synthesize_librispeech(tmp_path / "nj2", SPLITS, seed=3, nj=2)
    logs = sorted(p.name for p in (tmp_path / "nj2" / ".synth" / "librispeech" / "log").iterdir())
    assert logs == ["synth-corpus.0.log", "synth-corpus.1.log"]
    first, other = _corpus_files(libri), _corpus_files(tmp_path / "nj2")
    assert sorted(first) == sorted(other)
    assert sum(name.endswith(".flac") for name in first) == sum(SPLITS.values())
    assert sum(name.endswith(".TextGrid") for name in first) == sum(SPLITS.values())
    for name in first:
        assert first[name] == other[name], name


def _count_festival(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the festival batches the synthetic-corpus jobs of this process ask for."""
    calls: list[int] = []
    real = corpus_job.synthesize_each

    def counting(requests: list[FestivalRequest]) -> list:
        calls.append(len(requests))
        return real(requests)

    monkeypatch.setattr(corpus_job, "synthesize_each", counting)
    return calls


@pytest.mark.festival
def test_resume_and_complete(libri: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "copy"
    shutil.copytree(libri, out)
    calls = _count_festival(monkeypatch)
    # complete for the same config: returns at once without synthesizing
    synthesize_librispeech(out, SPLITS, seed=3)
    assert calls == []
    # a killed run: marker gone, one utterance missing, another with audio but no alignment
    utts = load_librispeech(out / "LibriSpeech", "train-clean-100", alignments_dir=out / "alignments")
    shutil.rmtree(out / ".synth")
    before = load_audio(utts[0].audio, None)
    Path(utts[0].audio).unlink()
    Path(utts[0].extra["alignment"]).unlink()
    Path(utts[1].extra["alignment"]).unlink()
    (Path(utts[0].audio).parent / f"{utts[0].speaker}-{utts[0].extra['chapter']}.trans.txt").unlink()
    synthesize_librispeech(out, SPLITS, seed=3)
    assert sum(calls) == 2
    np.testing.assert_array_equal(load_audio(utts[0].audio, None), before)
    assert len(load_librispeech(out / "LibriSpeech", "train-clean-100", alignments_dir=out / "alignments")) == 4
    assert (out / ".synth" / "librispeech" / "provenance.json").is_file()
    assert _corpus_files(out) == _corpus_files(libri)


@pytest.mark.festival
def test_killed_job_resumes_then_array_merges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL `--job 1` after its first utterance; `--job 1` again resumes after it, `--job 0` runs, and
    the same command without --job only merges: the corpus equals one made by nj=1 in one go."""
    reference = tmp_path / "reference"
    synthesize_ljspeech(reference, 4, seed=2, voice="kal")
    out = tmp_path / "killed"
    argv = ["synth-corpus", "--layout", "ljspeech", "--out", str(out), "--num-utts", "4", "--seed", "2",
            "--voice", "kal", "--nj", "2"]
    grids = out / "alignments" / "ljspeech"
    proc = subprocess.Popen([sys.executable, "-m", "speechunits", *argv, "--job", "1"], cwd=REPO,
                            env={**os.environ, DELAY_ENV: "30"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # a finished TextGrid, not the hidden temporary of one being written (pathlib's glob sees those)
        while not (grids.is_dir() and any(not p.name.startswith(".") for p in grids.glob("*.TextGrid"))):
            assert proc.poll() is None, f"job exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "the job wrote no utterance in 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    made = {p.name: p.stat().st_ino for p in (out / "LJSpeech-1.1" / "wavs").glob("*.wav") if not p.name.startswith(".")}
    assert len(made) == 1
    record = json.loads((out / ".synth" / "ljspeech" / "synth-corpus.1.json").read_text())
    assert not record["finished"] and record["given"] == 2
    for job in ("1", "0"):
        assert cli_main([*argv, "--job", job]) == 0
    assert {name: (out / "LJSpeech-1.1" / "wavs" / name).stat().st_ino for name in made} == made  # not redone
    assert not (out / "LJSpeech-1.1" / "metadata.csv").exists()  # a --job never merges
    capsys.readouterr()
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert "local job" not in captured.err and not (out / ".synth" / "ljspeech" / "log").exists()  # only merged
    assert captured.out.strip() == str(out / "LJSpeech-1.1")
    assert _corpus_files(out) == _corpus_files(reference)
    assert cli_main(argv) == 0
    assert "complete for this config; nothing to do" in capsys.readouterr().err


def _failing_festival(tmp_path: Path, text: str) -> Path:
    """A festival that fails (like a SIOD error) on any batch script holding ``text``, else is the real one."""
    real = shutil.which("festival")
    assert real is not None
    (tmp_path / "poison.txt").write_text(text + "\n")
    fake = tmp_path / "festival"
    fake.write_text(f"#!/bin/sh\nif [ -f \"$2\" ] && grep -qF -f {tmp_path / 'poison.txt'} \"$2\"; then\n"
                    "  echo 'SIOD ERROR: festival cannot say this' >&2; exit 255\nfi\n"
                    f"exec {real} \"$@\"\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.festival
def test_synthesize_each_isolates_the_failing_utterance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spk = Speaker("1", "festival", "kal", "M")
    texts = ["The red fox runs home.", "This one breaks festival today.", "A small bird sings."]
    fake = _failing_festival(tmp_path, texts[1])
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "festival" else None)
    results = synthesize_each([FestivalRequest(f"k{i}", t, spk) for i, t in enumerate(texts)])
    assert [type(r) for r in results] == [FestivalResult, ExternalToolError, FestivalResult]
    assert "cannot say this" in str(results[1]) and texts[1] in str(results[1])
    alone = synthesize_batch([FestivalRequest("k2", texts[2], spk)])[0]
    np.testing.assert_array_equal(results[2].wav, alone.wav)  # the same audio in a batch as alone


@pytest.mark.festival
def test_failing_utterance_is_listed_bad_and_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = layouts.ljspeech_plan(tmp_path / "out", 3, seed=4, voice="kal")
    poisoned = plan.utts[1]
    fake = _failing_festival(tmp_path, scheme_string(poisoned.text))
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "festival" else REAL_WHICH(name))
    root = synthesize_ljspeech(tmp_path / "out", 3, seed=4, voice="kal")
    marker = tmp_path / "out" / ".synth" / "ljspeech"
    bad = (marker / "bad_utts.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].startswith(f"{poisoned.id}\t") and "cannot say this" in bad[0]
    assert [u.id for u in load_ljspeech(root)] == [plan.utts[0].id, plan.utts[2].id]
    assert not Path(poisoned.audio).exists()
    assert set(json.loads((marker / "utterances.json").read_text())) == {plan.utts[0].id, plan.utts[2].id}
    assert (marker / "provenance.json").is_file()


def test_missing_festival_names_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ExternalToolError, match="festvox-kallpc16k.*make install"):
        synthesize_librispeech(tmp_path, {"dev-clean": 1}, voices=("kal",))
    with pytest.raises(ExternalToolError, match="espeak-ng.*make install"):
        from speechunits.data.synth.espeak import espeak_binary

        espeak_binary()


def test_festival_failure_reports_text_and_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "festival"
    fake.write_text("#!/bin/sh\necho 'SIOD ERROR: voice exploded' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "festival" else None)
    spk = Speaker("1", "festival", "kal", "M")
    with pytest.raises(ExternalToolError, match="Hello there.*voice exploded"):
        synthesize_batch([FestivalRequest("x", "Hello there", spk)])


def test_text_generator_and_splits_parsing() -> None:
    import random

    a = unique_sentences(50, random.Random(7), set())
    assert a == unique_sentences(50, random.Random(7), set())
    assert len({s.normalized for s in a}) == 50
    assert all(4 <= s.num_words <= 15 for s in a)
    assert any(s.raw != s.normalized for s in a)  # digits in raw text, spelled out when normalized
    assert parse_splits("train-clean-100:200,dev-clean:40") == {"train-clean-100": 200, "dev-clean": 40}
    for bad in ("train", "train:0", "a:1,a:2", ""):
        with pytest.raises(ConfigError):
            parse_splits(bad)


@pytest.mark.festival
def test_other_config_in_same_dir_is_refused(libri: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy2"
    shutil.copytree(libri, out)
    before = sorted(p.name for p in (out / "LibriSpeech").rglob("*.flac"))
    with pytest.raises(ConfigError, match="different config"):
        synthesize_librispeech(out, {"train-clean-100": 5, "dev-clean": 2}, seed=3)
    assert sorted(p.name for p in (out / "LibriSpeech").rglob("*.flac")) == before
