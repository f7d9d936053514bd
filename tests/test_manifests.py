"""Tests of Kaldi data dirs, JSONL manifests, load_manifest and ``convert-manifest``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main
from speechunits.data import kaldi as kaldi_mod
from speechunits.data.jsonl import iter_jsonl_manifest, load_manifest, read_jsonl_manifest, write_jsonl_manifest
from speechunits.data.kaldi import read_kaldi_dir, write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError


def _utts(root: Path) -> list[Utterance]:
    """Three utterances (given out of order) with unicode, repeated spaces and extra labels."""
    return [
        Utterance(
            id="spkB-002",
            audio=str(root / "b2.wav"),
            text="turn  on the   lights ",
            speaker="spkB",
            duration=1.25,
            num_samples=20000,
            sample_rate=16000,
            extra={"intent": "activate_lights", "location": "kitchen"},
        ),
        Utterance(
            id="spkA-001",
            audio=str(root / "a1.wav"),
            text="Größe café naïve — 東京",
            speaker="spkA",
            extra={"intent": "none"},
        ),
        Utterance(id="spkB-001", audio="sox in.flac -t wav - |", text="", speaker="spkB"),
    ]


def _sorted(utts: list[Utterance]) -> list[Utterance]:
    return sorted(utts, key=lambda u: u.id)


def test_kaldi_roundtrip(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    out = tmp_path / "data" / "train"
    write_kaldi_dir(utts, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "spk2utt", "text", "utt2dur", "utt2intent", "utt2location", "utt2num_samples", "utt2sample_rate",
        "utt2spk", "wav.scp",
    ]  # fmt: skip
    assert (out / "spk2utt").read_text() == "spkA spkA-001\nspkB spkB-001 spkB-002\n"
    assert (out / "wav.scp").read_text().splitlines()[0].startswith("spkA-001 ")
    assert read_kaldi_dir(out) == _sorted(utts)


def test_kaldi_c_locale_order(tmp_path: Path) -> None:
    utts = [Utterance(id=i, audio=f"/x/{i}.wav", speaker="s") for i in ["b", "B", "a_1", "a-1", "A"]]
    write_kaldi_dir(utts, tmp_path / "d")
    ids = [line.split()[0] for line in (tmp_path / "d" / "wav.scp").read_text().splitlines()]
    assert ids == ["A", "B", "a-1", "a_1", "b"]  # byte order, as LC_ALL=C sort


def test_kaldi_speakerless_gets_own_id(tmp_path: Path) -> None:
    write_kaldi_dir([Utterance(id="u1", audio="/a.wav")], tmp_path / "d")
    assert (tmp_path / "d" / "utt2spk").read_text() == "u1 u1\n"
    assert read_kaldi_dir(tmp_path / "d")[0].speaker == "u1"


def test_kaldi_relative_audio_resolved_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("u1 wavs/u1.wav\n")
    monkeypatch.chdir(tmp_path)
    assert read_kaldi_dir(d)[0].audio == str(tmp_path / "wavs" / "u1.wav")


def test_jsonl_roundtrip_and_streaming(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    path = tmp_path / "m.jsonl"
    write_jsonl_manifest(utts, path)
    assert read_jsonl_manifest(path) == utts
    assert list(iter_jsonl_manifest(path)) == utts
    assert "Größe" in path.read_text(encoding="utf-8")  # not \\u-escaped


def test_jsonl_relative_audio_resolved_against_manifest_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corpus").mkdir()
    path = tmp_path / "corpus" / "m.jsonl"
    path.write_text(json.dumps({"id": "u1", "audio": "wavs/u1.wav"}) + "\n")
    monkeypatch.chdir("/")
    assert read_jsonl_manifest(path)[0].audio == str(tmp_path / "corpus" / "wavs" / "u1.wav")


def test_kaldi_jsonl_kaldi_roundtrip_via_cli(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    write_kaldi_dir(utts, tmp_path / "k1")
    assert main(["convert-manifest", str(tmp_path / "k1"), str(tmp_path / "m.jsonl")]) == 0
    assert read_jsonl_manifest(tmp_path / "m.jsonl") == _sorted(utts)
    assert main(["convert-manifest", str(tmp_path / "m.jsonl"), str(tmp_path / "k2")]) == 0
    for name in sorted(p.name for p in (tmp_path / "k1").iterdir()):
        assert (tmp_path / "k2" / name).read_bytes() == (tmp_path / "k1" / name).read_bytes(), name
    assert load_manifest(tmp_path / "k2") == load_manifest(tmp_path / "m.jsonl")


def test_cli_with_durations(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(4000, dtype=np.float32), 8000)
    write_jsonl_manifest([Utterance(id="u1", audio=str(tmp_path / "a.wav"), text="hi")], tmp_path / "m.jsonl")
    assert main(["convert-manifest", str(tmp_path / "m.jsonl"), str(tmp_path / "k"), "--with-durations"]) == 0
    utt = read_kaldi_dir(tmp_path / "k")[0]
    assert (utt.num_samples, utt.sample_rate, utt.duration) == (4000, 8000, 0.5)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.jsonl").write_text('{"id": "u1"}\n')
    assert main(["convert-manifest", str(tmp_path / "m.jsonl"), str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'm.jsonl'}:1:" in err and "'audio'" in err
    assert not (tmp_path / "k").exists()
    (tmp_path / "k").mkdir()
    assert main(["convert-manifest", str(tmp_path / "k"), str(tmp_path / "out")]) == 2
    assert ".jsonl" in capsys.readouterr().err


# ----------------------------------------------------------------- Kaldi validation


def _data_dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    files.setdefault("wav_scp", "u1 /a/u1.wav\nu2 /a/u2.wav\n")
    for name, content in files.items():
        (d / name.replace("_scp", ".scp")).write_text(content)
    return d


def _raises(d: Path, file: str, line: int | None, match: str, **kw: bool) -> None:
    with pytest.raises(ManifestError, match=match) as err:
        read_kaldi_dir(d, **kw)
    where = str(d / file) + (f":{line}:" if line is not None else ":")
    assert str(err.value).startswith(where), str(err.value)


def test_missing_wav_scp(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "text").write_text("u1 hi\n")
    _raises(d, "wav.scp", None, "missing")


def test_malformed_wav_scp_line(tmp_path: Path) -> None:
    _raises(_data_dir(tmp_path, wav_scp="u1 /a/u1.wav\nu2\n"), "wav.scp", 2, "malformed")


def test_unsorted_ids(tmp_path: Path) -> None:
    _raises(_data_dir(tmp_path, wav_scp="u2 /a/u2.wav\nu1 /a/u1.wav\n"), "wav.scp", 2, "not sorted")


def test_duplicate_ids(tmp_path: Path) -> None:
    _raises(_data_dir(tmp_path, wav_scp="u1 /a/u1.wav\nu1 /a/u1b.wav\n"), "wav.scp", 2, "duplicate id 'u1'")


def test_utt2spk_id_missing_from_wav_scp(tmp_path: Path) -> None:
    d = _data_dir(tmp_path, utt2spk="u1 s\nu2 s\nu3 s\n")
    _raises(d, "utt2spk", 3, "'u3' is not in wav.scp")


def test_utt2spk_spk2utt_inconsistent(tmp_path: Path) -> None:
    d = _data_dir(tmp_path, utt2spk="u1 s1\nu2 s2\n", spk2utt="s1 u1 u2\n")
    _raises(d, "spk2utt", 1, "'u2' listed under speaker 's1' but assigned to 's2'")


def test_missing_transcript(tmp_path: Path) -> None:
    d = _data_dir(tmp_path, text="u1 hello\n")
    _raises(d, "text", None, "no transcript for utterance 'u2'")
    assert [u.text for u in read_kaldi_dir(d, require_text=False)] == ["hello", None]


def test_bad_duration(tmp_path: Path) -> None:
    _raises(_data_dir(tmp_path, utt2dur="u1 1.5\nu2 abc\n"), "utt2dur", 2, "expected a float")


def test_write_rejects_duplicates_and_non_string_extra(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="duplicate utterance id 'u1'"):
        write_kaldi_dir([Utterance(id="u1", audio="/a"), Utterance(id="u1", audio="/b")], tmp_path / "d")
    with pytest.raises(ManifestError, match="only string labels"):
        write_kaldi_dir([Utterance(id="u1", audio="/a", extra={"n": 3})], tmp_path / "d")
    with pytest.raises(ManifestError, match="line break"):
        write_kaldi_dir([Utterance(id="u1", audio="/a", text="two\nlines")], tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_failed_kaldi_write_keeps_old_dir_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "train"
    write_kaldi_dir(_utts(tmp_path), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_swap = kaldi_mod._swap_in
    calls = []

    def failing_swap(tmp: Path, dest: Path) -> None:
        calls.append(sorted(p.name for p in tmp.iterdir()))  # files were fully written first
        raise OSError("disk full")

    monkeypatch.setattr(kaldi_mod, "_swap_in", failing_swap)
    with pytest.raises(OSError, match="disk full"):
        write_kaldi_dir(_utts(tmp_path)[:1], out)
    assert calls and "wav.scp" in calls[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    monkeypatch.setattr(kaldi_mod, "_swap_in", real_swap)
    write_kaldi_dir(_utts(tmp_path)[:1], out)
    assert [u.id for u in read_kaldi_dir(out)] == ["spkB-002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


@pytest.mark.parametrize("point", ["atomic-write:train", "kaldi-dir-moved-aside:train"])
def test_kaldi_write_killed_mid_way_leaves_nothing_after_the_rerun(tmp_path: Path, point: str) -> None:
    """A SIGKILL before the temporary directory is renamed in (or after the old one is moved
    aside) left ``.train.*.tmp`` / ``.train.*.old`` beside the data dir for good; the next write
    removes a killed writer's (chaos harness, prepare-data, issue 17)."""
    import os
    import signal
    import subprocess
    import sys

    from speechunits.killpoints import KILL_AT_ENV

    out = tmp_path / "train"
    write_kaldi_dir(_utts(tmp_path), out)
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]); "
            "from test_manifests import _utts; from speechunits.data.kaldi import write_kaldi_dir; "
            "write_kaldi_dir(_utts(Path(sys.argv[1]))[:1], Path(sys.argv[1]) / 'train')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)],
                          env={**os.environ, KILL_AT_ENV: f"{point}#1"}, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if p.name != "train"]  # the killed writer's temporary
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
    rerun = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)], env=env)
    assert rerun.returncode == 0  # a new process, as a rerun is: it lists the directory afresh
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    assert [u.id for u in read_kaldi_dir(out)] == ["spkB-002"]


def test_failed_kaldi_write_mid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing the files leaves neither the target nor a temp dir."""
    real_open = open

    def flaky_open(file: object, mode: str = "r", *args: object, **kw: object):  # type: ignore[no-untyped-def]
        if "w" in mode and str(file).endswith("utt2spk"):
            raise OSError("quota exceeded")
        return real_open(file, mode, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", flaky_open)
    with pytest.raises(OSError, match="quota"):
        write_kaldi_dir(_utts(tmp_path), tmp_path / "train")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- JSONL validation


def _jsonl(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "line", "match"),
    [
        (['{"id": "u1", "audio": "/a.wav"}', '{"id": "u2", "audio": '], 2, "invalid JSON"),
        (['{"audio": "/a.wav"}'], 1, "missing required field 'id'"),
        (['{"id": "u1"}'], 1, "missing required field 'audio'"),
        (['{"id": "u1", "audio": ""}'], 1, "non-empty string"),
        (['["u1", "/a.wav"]'], 1, "expected a JSON object"),
        (['{"id": "u1", "audio": "/a.wav", "num_samples": "10"}'], 1, "'num_samples' must be int"),
        (
            ['{"id": "u1", "audio": "/a"}', "", '{"id": "u1", "audio": "/b"}'],
            3,
            r"duplicate id 'u1' \(first on line 1\)",
        ),
    ],
)
def test_bad_jsonl_lines(tmp_path: Path, lines: list[str], line: int, match: str) -> None:
    path = _jsonl(tmp_path, *lines)
    with pytest.raises(ManifestError, match=match) as err:
        read_jsonl_manifest(path)
    assert str(err.value).startswith(f"{path}:{line}:"), str(err.value)


def test_load_manifest_rejects_other_paths(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("id,audio\n")
    with pytest.raises(ManifestError, match="Kaldi data directory or a .jsonl"):
        load_manifest(tmp_path / "x.csv")
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "absent.jsonl")
    with pytest.raises(ManifestError, match="found nothing"):
        load_manifest(tmp_path / "absent_dir")


def test_failed_jsonl_write_leaves_no_partial_output(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    good = [Utterance(id="u1", audio="/a.wav")]
    write_jsonl_manifest(good, path)
    bad = good + [Utterance(id="u2", audio="/b.wav", extra={"x": object()})]
    with pytest.raises(ManifestError, match="not JSON-serialisable"):
        write_jsonl_manifest(bad, path)
    assert read_jsonl_manifest(path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_combine_data(tmp_path: Path) -> None:
    from speechunits.cli import main
    from speechunits.data.jsonl import load_manifest
    from speechunits.data.kaldi import write_kaldi_dir
    from speechunits.data.utterance import Utterance

    a = [Utterance(id="a1", audio="/x/a1.wav", text="A", speaker="s1")]
    b = [Utterance(id="b1", audio="/x/b1.wav", text="B", speaker="s2"),
         Utterance(id="a0", audio="/x/a0.wav", text="C", speaker="s2")]
    write_kaldi_dir(a, tmp_path / "a")
    write_kaldi_dir(b, tmp_path / "b")
    assert main(["combine-data", str(tmp_path / "ab"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert [u.id for u in load_manifest(tmp_path / "ab")] == ["a0", "a1", "b1"]
    assert main(["combine-data", str(tmp_path / "aa"), str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert not (tmp_path / "aa").exists()


def test_load_manifests_concatenates_and_rejects_shared_ids(tmp_path: Path) -> None:
    from speechunits.data.jsonl import load_manifests

    utts = _utts(tmp_path)
    write_kaldi_dir(utts[:1], tmp_path / "a")
    write_kaldi_dir(utts[1:], tmp_path / "b")
    both = load_manifests([tmp_path / "a", tmp_path / "b"])
    assert [u.id for u in both] == [u.id for u in utts[:1]] + [u.id for u in _sorted(utts[1:])]
    assert [u.id for u in load_manifests(tmp_path / "b")] == [u.id for u in _sorted(utts[1:])]
    write_kaldi_dir(utts[:1], tmp_path / "c")
    with pytest.raises(ManifestError, match=f"{utts[0].id}.*also in .*a"):
        load_manifests([tmp_path / "a", tmp_path / "c"])
