"""``speechunits extract-f0``: tracks per utterance, bad audio listed, corpus log-F0 statistics, --nj 2 local
jobs, resume after SIGKILL without redoing finished tracks, reruns skipped, changed settings redone."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits import cli
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError
from speechunits.features import f0_cli
from speechunits.features.f0 import extract_f0
from speechunits.features.f0_store import F0Store, log_f0_stats
from speechunits.jobs import DELAY_ENV

REPO = Path(__file__).resolve().parents[1]
SR = 16000
GOOD = {"a1": 120.0, "a2": 150.0, "b1": 200.0, "b2": 240.0, "c1": 180.0}


def harmonic(f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A data dir holding only manifest.jsonl: five tones with silence, a corrupt file, an empty one, a NaN one."""
    wav = tmp_path / "wav"
    wav.mkdir()
    utts = []
    for uid, hz in GOOD.items():
        sf.write(wav / f"{uid}.wav", np.concatenate([np.zeros(1600, np.float32), harmonic(hz, 0.4),
                                                     np.zeros(1600, np.float32)]), SR, subtype="FLOAT")
        utts.append(Utterance(uid, str(wav / f"{uid}.wav"), speaker=uid[0]))
    (wav / "corrupt.wav").write_bytes(b"RIFF\x00\x00 this is not a wave file at all")
    (wav / "empty.wav").write_bytes(b"")
    nan = harmonic(150.0, 0.2)
    nan[10] = np.nan
    sf.write(wav / "nan.wav", nan, SR, subtype="FLOAT")
    utts += [Utterance("z_corrupt", str(wav / "corrupt.wav")), Utterance("z_empty", str(wav / "empty.wav")),
             Utterance("z_nan", str(wav / "nan.wav"))]
    root = tmp_path / "data"
    root.mkdir()
    write_jsonl_manifest(utts, root / "manifest.jsonl")
    return root


def _run(data: Path, out: Path, *extra: str) -> int:
    return cli.main(["extract-f0", "--data", str(data), "--out", str(out), "--quiet", *extra])


def _check_output(data: Path, out: Path) -> F0Store:
    store = F0Store(out)
    assert store.ids() == sorted(GOOD) and store.num_utterances == len(GOOD)
    for uid, hz in GOOD.items():
        f0 = store.get(uid)
        assert f0.shape == (60,)  # 0.1 + 0.4 + 0.1 s at 10 ms
        assert np.median(f0[f0 > 0]) == pytest.approx(hz, rel=0.01)
        assert (f0[:8] == 0).all() and (f0[-8:] == 0).all()
    mean, std, _ = log_f0_stats(store.get(u) for u in GOOD)
    assert store.log_f0_mean == pytest.approx(mean) and store.log_f0_std == pytest.approx(std)
    assert 4.7 < store.log_f0_mean < 5.3 and store.log_f0_std > 0.1
    bad = dict(line.split("\t", 1) for line in (out / "bad_utts.txt").read_text().splitlines())
    assert sorted(bad) == ["z_corrupt", "z_empty", "z_nan"]
    assert "corrupt.wav" in bad["z_corrupt"] and "empty" in bad["z_empty"] and "non-finite" in bad["z_nan"]
    assert (out / "provenance.json").is_file()
    assert not list(out.glob("extract-f0.*.json")) and not list(out.glob("bad_utts.*.txt"))
    assert not [p for p in (out / "f0").iterdir() if p.name.startswith(".")]  # no temporaries left
    return store


def test_two_local_jobs_then_rerun_skipped(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f0"
    assert _run(data, out, "--nj", "2") == 0
    assert (out / "log" / "extract-f0.0.log").is_file() and (out / "log" / "extract-f0.1.log").is_file()
    _check_output(data, out)
    err = capsys.readouterr().err
    assert "5 utterance(s) in f0/, 3 in bad_utts.txt" in err
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "f0").iterdir()}
    assert _run(data, out, "--nj", "2") == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "f0").iterdir()} == stamps


def test_resume_after_kill_redoes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "f0"
    cmd = [sys.executable, "-m", "speechunits", "extract-f0", "--data", str(data), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, DELAY_ENV: "30"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("f0/*.npy")):
            assert proc.poll() is None, f"job exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "no track written in 60 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (out / "f0").glob("*.npy")}
    assert 1 <= len(done) < len(GOOD) and not (out / "provenance.json").exists()
    assert _run(data, out) == 0
    assert {name: (out / "f0" / name).stat().st_mtime_ns for name in done} == done  # not redone
    _check_output(data, out)


def test_write_killed_before_its_rename_leaves_no_temporary_after_resume(data: Path, tmp_path: Path) -> None:
    """A SIGKILL between an atomic write's temporary and its rename (``bad_utts.J.txt`` of a local
    shard job here) left ``.bad_utts.J.txt.*.tmp.txt`` behind for good; the resumed job's write
    of the same name removes it (its writer is dead, a zombie counts as dead) (chaos harness, issue 17)."""
    from speechunits.killpoints import KILL_AT_ENV

    out = tmp_path / "f0"
    cmd = [sys.executable, "-m", "speechunits", "extract-f0", "--data", str(data), "--out", str(out), "--quiet",
           "--nj", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, KILL_AT_ENV: "atomic-write:bad_utts.#.txt#1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the killed shard jobs are gone (or zombies)
    assert list(out.glob(".bad_utts.*.tmp.txt"))
    assert _run(data, out, "--nj", "2") == 0
    _check_output(data, out)
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]


def test_changed_settings_redo_and_job_refuses(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "f0"
    assert _run(data, out) == 0
    _check_output(data, out)
    (out / "f0" / "stray.npy").write_bytes((out / "f0" / "a1.npy").read_bytes())  # not in the corpus
    (out / "provenance.json").unlink()
    assert _run(data, out) == 0  # merges again: the stray track goes
    assert not (out / "f0" / "stray.npy").exists() and F0Store(out).ids() == sorted(GOOD)
    parser = argparse.ArgumentParser()
    f0_cli.add_arguments(parser)
    with pytest.raises(ConfigError, match="without --job"):
        f0_cli.run(parser.parse_args(["--data", str(data), "--out", str(out), "--hop-seconds", "0.02",
                                      "--nj", "2", "--job", "0", "--quiet"]))
    assert _run(data, out, "--hop-seconds", "0.02") == 0
    store = F0Store(out)
    assert store.hop_seconds == 0.02 and store.ids() == sorted(GOOD)
    assert store.get("a1").shape == (30,)
    wave = np.concatenate([np.zeros(1600, np.float32), harmonic(GOOD["a1"], 0.4), np.zeros(1600, np.float32)])
    np.testing.assert_array_equal(store.get("a1"), extract_f0(wave, SR, store.config))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "praat-ac" and meta["format"] == "speechunits.f0/1"


def test_bad_options_and_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path / "nothing", tmp_path / "out") == 2
    assert "error:" in capsys.readouterr().err
    data = tmp_path / "d"
    data.mkdir()
    write_jsonl_manifest([Utterance("x", str(tmp_path / "x.wav"))], data / "manifest.jsonl")
    assert _run(data, tmp_path / "out", "--floor-hz", "600") == 2
    assert "floor_hz" in capsys.readouterr().err
