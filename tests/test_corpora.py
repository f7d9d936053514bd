"""Corpus loaders on tiny hand-built copies of the real LibriSpeech/LJSpeech/FSC/SLURP layouts, and prepare-data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli import main as cli_main
from speechunits.data.corpora import CORPORA, load_fsc, load_librispeech, load_ljspeech, load_slurp
from speechunits.data.jsonl import read_jsonl_manifest
from speechunits.data.kaldi import read_kaldi_dir
from speechunits.errors import ConfigError, ManifestError

SR = 16000


def tone(path: Path, seconds: float = 0.1, freq: float = 220.0) -> Path:
    """Write a short sine (wav or flac, by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path


# ------------------------------------------------------------------ LibriSpeech

LIBRI = {
    ("19", "198"): {"0000": "NORTHANGER ABBEY", "0001": "THIS LITTLE WORK WAS FINISHED"},
    ("26", "495"): {"0004": "CHAPTER ONE"},
}


def make_librispeech(tmp_path: Path, split: str = "dev-clean") -> Path:
    """<tmp>/LibriSpeech/<split>/<spk>/<chapter>/... ; returns the LibriSpeech dir."""
    root = tmp_path / "LibriSpeech"
    for (spk, chap), utts in LIBRI.items():
        cdir = root / split / spk / chap
        lines = []
        for n, text in utts.items():
            tone(cdir / f"{spk}-{chap}-{n}.flac")
            lines.append(f"{spk}-{chap}-{n} {text}\n")
        (cdir / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return root


def test_librispeech_ids_texts_speakers(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    utts = load_librispeech(root, "dev-clean")
    assert [u.id for u in utts] == ["19-198-0000", "19-198-0001", "26-495-0004"]
    assert utts[1].text == "THIS LITTLE WORK WAS FINISHED"
    assert [u.speaker for u in utts] == ["19", "19", "26"]
    assert utts[2].extra == {"chapter": "495"}
    assert Path(utts[0].audio) == root / "dev-clean/19/198/19-198-0000.flac"
    # the parent of LibriSpeech/ is accepted as root too
    assert [u.id for u in load_librispeech(tmp_path, "dev-clean")] == [u.id for u in utts]


def test_librispeech_alignments_in_three_layouts(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    ali = tmp_path / "ali"
    for p in (ali / "dev-clean/19/198/19-198-0000.TextGrid", ali / "19/19-198-0001.TextGrid", ali / "26-495-0004.TextGrid"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    utts = load_librispeech(root, "dev-clean", alignments_dir=ali)
    assert [Path(u.extra["alignment"]).name for u in utts] == [f"{u.id}.TextGrid" for u in utts]
    (ali / "26-495-0004.TextGrid").unlink()
    assert "alignment" not in load_librispeech(root, "dev-clean", alignments_dir=ali)[2].extra
    with pytest.raises(ManifestError, match="no TextGrid found"):
        load_librispeech(root, "dev-clean", alignments_dir=tmp_path / "LibriSpeech")


def test_librispeech_missing_corpus_and_split(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"does not exist; expected the layout <root>/<split>/<speaker>"):
        load_librispeech(tmp_path / "nowhere", "dev-clean")
    root = make_librispeech(tmp_path)
    with pytest.raises(ManifestError, match=r"split 'test-clean' is missing \(splits present: dev-clean\)") as err:
        load_librispeech(root, "test-clean")
    assert err.value.path == root / "test-clean"


def test_librispeech_audio_without_transcript(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    extra = tone(root / "dev-clean/19/198/19-198-0002.flac")
    with pytest.raises(ManifestError, match="no transcript line for '19-198-0002'") as err:
        load_librispeech(root, "dev-clean")
    assert err.value.path == extra


def test_librispeech_transcript_without_audio(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    (root / "dev-clean/19/198/19-198-0001.flac").unlink()
    with pytest.raises(ManifestError, match=r"19-198.trans.txt:2: transcript of '19-198-0001' has no audio file"):
        load_librispeech(root, "dev-clean")


def test_librispeech_missing_trans_file(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    (root / "dev-clean/26/495/26-495.trans.txt").unlink()
    with pytest.raises(ManifestError, match="26-495.trans.txt is missing"):
        load_librispeech(root, "dev-clean")


@pytest.mark.parametrize("line", ["26-495-0004", "19-198-0004 WRONG CHAPTER", "26-495-0004 CHAPTER ONE"])
def test_librispeech_malformed_lines(tmp_path: Path, line: str) -> None:
    root = make_librispeech(tmp_path)
    trans = root / "dev-clean/26/495/26-495.trans.txt"
    trans.write_text(trans.read_text() + line + "\n")
    with pytest.raises(ManifestError, match=r"26-495.trans.txt:2: (expected '<utt-id> <TRANSCRIPT>'|.*does not belong|duplicate)"):
        load_librispeech(root, "dev-clean")


# ------------------------------------------------------------------ LJSpeech

LJ_META = (
    "LJ001-0001|Printing, in the only sense with which we are at present concerned|"
    "Printing, in the only sense with which we are at present concerned\n"
    'LJ001-0002|in being comparatively modern, "Mr." 1820.|in being comparatively modern, "Mister" eighteen twenty.\n'
)


def make_ljspeech(tmp_path: Path) -> Path:
    root = tmp_path / "LJSpeech-1.1"
    for n in ("0001", "0002"):
        tone(root / "wavs" / f"LJ001-{n}.wav")
    (root / "metadata.csv").write_text(LJ_META, encoding="utf-8")
    return root


def test_ljspeech_normalized_text_speaker(tmp_path: Path) -> None:
    utts = load_ljspeech(make_ljspeech(tmp_path))
    assert [u.id for u in utts] == ["LJ001-0001", "LJ001-0002"]
    assert utts[1].text == 'in being comparatively modern, "Mister" eighteen twenty.'
    assert utts[1].extra["raw_text"] == 'in being comparatively modern, "Mr." 1820.'
    assert {u.speaker for u in utts} == {"LJ"}


def test_ljspeech_chapter_split(tmp_path: Path) -> None:
    root = make_ljspeech(tmp_path)
    for clip in ("LJ002-0001", "LJ017-0001", "LJ017-0002"):
        tone(root / "wavs" / f"{clip}.wav")
    with open(root / "metadata.csv", "a", encoding="utf-8") as f:
        f.write("LJ002-0001|valid clip|valid clip\nLJ017-0001|a|a\nLJ017-0002|b|b\n")
    ids = {split: [u.id for u in load_ljspeech(root, split)] for split in ("all", "train", "valid", "test")}
    assert ids["test"] == ["LJ001-0001", "LJ001-0002"] and ids["valid"] == ["LJ002-0001"]
    assert ids["train"] == ["LJ017-0001", "LJ017-0002"]
    assert sorted(ids["train"] + ids["valid"] + ids["test"]) == ids["all"]
    with pytest.raises(ManifestError, match="LJSpeech splits are all, train, valid, test"):
        load_ljspeech(root, "dev")


def test_ljspeech_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="metadata.csv"):
        load_ljspeech(tmp_path / "missing")
    root = make_ljspeech(tmp_path)
    tone(root / "wavs/LJ001-0003.wav")
    with pytest.raises(ManifestError, match="LJ001-0003.wav: audio file has no line in"):
        load_ljspeech(root)
    (root / "wavs/LJ001-0003.wav").unlink()
    (root / "wavs/LJ001-0002.wav").unlink()
    with pytest.raises(ManifestError, match=r"metadata.csv:2: clip 'LJ001-0002' has no audio file"):
        load_ljspeech(root)
    (root / "metadata.csv").write_text("LJ001-0001|only two fields\n")
    with pytest.raises(ManifestError, match=r"metadata.csv:1: expected 3 '\|'-separated fields"):
        load_ljspeech(root)


# ------------------------------------------------------------------ Fluent Speech Commands

FSC_CSV = (
    ",path,speakerId,transcription,action,object,location\n"
    "0,wavs/speakers/2BqVo8kVB2Skwgyb/0a3129c0.wav,2BqVo8kVB2Skwgyb,Change language,change language,none,none\n"
    '1,wavs/speakers/2BqVo8kVB2Skwgyb/0ee42a80.wav,2BqVo8kVB2Skwgyb,"Okay, turn the lights on",activate,lights,none\n'
    "2,wavs/speakers/xRQE5VD7rRHVdyvM/1a2b.wav,xRQE5VD7rRHVdyvM,Heat up the kitchen,increase,heat,kitchen\n"
)


def make_fsc(tmp_path: Path, split: str = "train") -> Path:
    root = tmp_path / "fluent_speech_commands_dataset"
    for line in FSC_CSV.splitlines()[1:]:
        tone(root / line.split(",")[1])
    (root / "data").mkdir(parents=True)
    (root / "data" / f"{split}_data.csv").write_text(FSC_CSV)
    return root


def test_fsc_labels_and_comma_transcripts(tmp_path: Path) -> None:
    utts = load_fsc(make_fsc(tmp_path), "train")
    assert [u.id for u in utts] == ["2BqVo8kVB2Skwgyb-0a3129c0", "2BqVo8kVB2Skwgyb-0ee42a80", "xRQE5VD7rRHVdyvM-1a2b"]
    assert utts[1].text == "Okay, turn the lights on"
    assert utts[1].extra == {"action": "activate", "object": "lights", "location": "none", "intent": "activate_lights_none"}
    assert utts[0].extra["intent"] == "change language_none_none"
    assert utts[2].speaker == "xRQE5VD7rRHVdyvM"


def test_fsc_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist; expected the layout <root>/data/"):
        load_fsc(tmp_path / "missing", "train")
    root = make_fsc(tmp_path)
    with pytest.raises(ManifestError, match=r"split 'valid' is missing \(splits present: train\)"):
        load_fsc(root, "valid")
    (root / "wavs/speakers/xRQE5VD7rRHVdyvM/1a2b.wav").unlink()
    with pytest.raises(ManifestError, match=r"train_data.csv:4: transcript row has no audio file"):
        load_fsc(root, "train")
    csv_path = root / "data/train_data.csv"
    csv_path.write_text(FSC_CSV.splitlines()[0] + "\n0,wavs/speakers/2BqVo8kVB2Skwgyb/0a3129c0.wav,2BqVo8kVB2Skwgyb,Hi\n")
    with pytest.raises(ManifestError, match=r"train_data.csv:2: column 'action' is empty or missing"):
        load_fsc(root, "train")
    csv_path.write_text(",path,speaker,transcription,action,object,location\n")
    with pytest.raises(ManifestError, match=r"train_data.csv:1: header lacks column\(s\) speakerId"):
        load_fsc(root, "train")


# ------------------------------------------------------------------ SLURP


def slurp_record(slurp_id: int, sentence: str, intent: str, files: list[str]) -> dict:
    scenario, action = intent.split("_", 1)
    return {
        "slurp_id": slurp_id, "sentence": sentence, "sentence_annotation": sentence, "intent": intent,
        "action": action, "scenario": scenario, "tokens": [], "entities": [],
        "recordings": [{"file": f, "wer": 0.0, "ent_wer": None, "status": "correct"} for f in files],
    }


def make_slurp(tmp_path: Path) -> Path:
    root = tmp_path / "slurp"
    records = [
        slurp_record(13804, "siri what is one american dollar in japanese yen", "qa_currency",
                     ["audio-1434542201-headset.flac", "audio-1434542201.flac"]),
        slurp_record(4318, "wake me up at ten", "alarm_set", ["audio--1504194842.flac"]),
    ]
    text_dir = root / "dataset/slurp"
    text_dir.mkdir(parents=True)
    (text_dir / "devel.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for r in records:
        for rec in r["recordings"]:
            tone(root / "audio/slurp_real" / rec["file"])
    meta = {"13804": {"recordings": {"audio-1434542201.flac": {"usrid": "FO-232"}}}}
    (text_dir / "metadata.json").write_text(json.dumps(meta))
    return root


def test_slurp_one_utterance_per_recording(tmp_path: Path) -> None:
    root = make_slurp(tmp_path)
    utts = load_slurp(root, "devel")
    assert [u.id for u in utts] == ["audio--1504194842", "audio-1434542201", "audio-1434542201-headset"]
    assert utts[1].text == "siri what is one american dollar in japanese yen"
    assert utts[1].extra == {"scenario": "qa", "action": "currency", "intent": "qa_currency", "slurp_id": "13804",
                             "sentence_annotation": "siri what is one american dollar in japanese yen", "entities": []}
    assert utts[1].speaker == "FO-232" and utts[2].speaker is None
    assert Path(utts[0].audio) == root / "audio/slurp_real/audio--1504194842.flac"
    moved = tmp_path / "elsewhere"
    (root / "audio/slurp_real").rename(moved)
    assert [u.id for u in load_slurp(root, "devel", audio_dir=moved)] == [u.id for u in utts]
    with pytest.raises(ManifestError, match="SLURP audio directory does not exist"):
        load_slurp(root, "devel")


def test_slurp_errors(tmp_path: Path) -> None:
    root = make_slurp(tmp_path)
    with pytest.raises(ManifestError, match=r"split 'test' is missing \(splits present: devel\)"):
        load_slurp(root, "test")
    (root / "dataset/slurp/train_synthetic.jsonl").write_text(json.dumps(slurp_record(1, "hi", "qa_factoid", ["x.flac"])) + "\n")
    with pytest.raises(ManifestError, match="slurp_synth"):  # synthetic audio has its own default directory
        load_slurp(root, "train_synthetic")
    (root / "audio/slurp_real/audio-1434542201.flac").unlink()
    with pytest.raises(ManifestError, match=r"devel.jsonl:1: recording 'audio-1434542201.flac' of slurp_id 13804 has no audio"):
        load_slurp(root, "devel")
    path = root / "dataset/slurp/devel.jsonl"
    path.write_text('{"slurp_id": 1, "sentence": "x"\n')
    with pytest.raises(ManifestError, match=r"devel.jsonl:1: invalid JSON"):
        load_slurp(root, "devel")
    path.write_text(json.dumps({"slurp_id": 1, "sentence": "x", "scenario": "qa", "action": "a", "recordings": []}) + "\n")
    with pytest.raises(ManifestError, match=r"devel.jsonl:1: record lacks the field 'intent'"):
        load_slurp(root, "devel")


# ------------------------------------------------------------------ speechocean762


def make_speechocean762(tmp_path: Path) -> Path:
    """<root>/test/{wav.scp,text,utt2spk,spk2utt} with root-relative WAVE/ paths, as the corpus ships."""
    root = tmp_path / "speechocean762"
    utts = {"000030012": ("0003", "MARK IS GOING TO SEE ELEPHANT"), "000030024": ("0003", "KATE LOVES CHINA"),
            "000240010": ("0024", "IT IS A NICE DAY")}
    split = root / "test"
    split.mkdir(parents=True)
    for utt, (spk, _) in utts.items():
        tone(root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV".replace(".WAV", ".wav")).rename(
            root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV")
    (split / "wav.scp").write_text("".join(f"{u}\tWAVE/SPEAKER{s}/{u}.WAV\n" for u, (s, _) in utts.items()))
    (split / "text").write_text("".join(f"{u}\t{t}\n" for u, (_, t) in utts.items()))
    (split / "utt2spk").write_text("".join(f"{u}\t{s}\n" for u, (s, _) in utts.items()))
    (split / "spk2utt").write_text("0003 000030012 000030024\n0024 000240010\n")
    return root


def test_speechocean762_reads_root_relative_wav_scp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_speechocean762(tmp_path)
    monkeypatch.chdir(tmp_path)  # not the corpus root: paths must resolve against it, not the cwd
    utts = CORPORA["speechocean762"].load(root, "test")
    assert [(u.id, u.speaker, u.text) for u in utts][:2] == [("000030012", "0003", "MARK IS GOING TO SEE ELEPHANT"),
                                                              ("000030024", "0003", "KATE LOVES CHINA")]
    assert utts[2].audio == str(root.absolute() / "WAVE" / "SPEAKER0024" / "000240010.WAV")
    with pytest.raises(ManifestError, match="split 'train' is missing"):
        CORPORA["speechocean762"].load(root, "train")
    (root / "WAVE" / "SPEAKER0024" / "000240010.WAV").unlink()
    with pytest.raises(ManifestError, match=r"test/wav.scp: audio of utterance '000240010' not found"):
        CORPORA["speechocean762"].load(root, "test")
    (root / "test" / "text").write_text("000030012\tMARK\n")
    with pytest.raises(ManifestError, match="no transcript for utterance"):
        CORPORA["speechocean762"].load(root, "test")


# ------------------------------------------------------------------ registry and prepare-data


def test_registry_rejects_options_a_corpus_does_not_take(tmp_path: Path) -> None:
    assert set(CORPORA) == {"librispeech", "ljspeech", "fsc", "slurp", "speechocean762", "zr2021"}
    with pytest.raises(ConfigError, match="--alignments is not supported for corpus 'fsc'"):
        CORPORA["fsc"].load(make_fsc(tmp_path), "train", alignments_dir=tmp_path)


def test_prepare_data_fsc_writes_kaldi_dir_manifest_and_skips_rerun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_fsc(tmp_path)
    out = tmp_path / "data/train"
    argv = ["prepare-data", "--corpus", "fsc", "--corpus-dir", str(root), "--split", "train", "--out", str(out)]
    assert cli_main(argv) == 0
    kaldi = read_kaldi_dir(out)
    manifest = read_jsonl_manifest(out / "manifest.jsonl")
    assert [u.id for u in kaldi] == [u.id for u in manifest] == [u.id for u in load_fsc(root, "train")]
    assert (out / "utt2intent").read_text().splitlines()[1] == "2BqVo8kVB2Skwgyb-0ee42a80 activate_lights_none"
    assert manifest[1].text == "Okay, turn the lights on" and kaldi[1].text == manifest[1].text
    assert (out / "provenance.json").is_file() and not (out / "utt2dur").exists()
    stamp = (out / "provenance.json").stat().st_mtime_ns
    assert cli_main(argv) == 0
    assert "skipped" in capsys.readouterr().err
    assert (out / "provenance.json").stat().st_mtime_ns == stamp
    assert cli_main(argv + ["--with-durations"]) == 0  # a changed config redoes the work
    assert (out / "utt2dur").read_text().split()[1] == "0.1"
    assert read_jsonl_manifest(out / "manifest.jsonl")[0].num_samples == 1600


def test_prepare_data_librispeech_with_alignments(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    (tmp_path / "ali").mkdir()
    (tmp_path / "ali/19-198-0000.TextGrid").write_text("x")
    out = tmp_path / "data/dev"
    assert cli_main(["prepare-data", "--corpus", "librispeech", "--corpus-dir", str(root), "--split", "dev-clean",
                     "--out", str(out), "--alignments", str(tmp_path / "ali")]) == 0
    assert read_jsonl_manifest(out / "manifest.jsonl")[0].extra["alignment"] == str(tmp_path / "ali/19-198-0000.TextGrid")
    assert (out / "utt2chapter").read_text().splitlines()[0] == "19-198-0000 198"


def test_prepare_data_errors_leave_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "data/x"
    assert cli_main(["prepare-data", "--corpus", "ljspeech", "--corpus-dir", str(tmp_path / "none"),
                     "--split", "all", "--out", str(out)]) == 2
    assert "LJSpeech corpus directory does not exist" in capsys.readouterr().err
    root = make_ljspeech(tmp_path)
    (root / "wavs/LJ001-0002.wav").write_bytes(b"not audio")
    assert cli_main(["prepare-data", "--corpus", "ljspeech", "--corpus-dir", str(root), "--split", "all",
                     "--out", str(out), "--with-durations"]) == 2
    assert "LJ001-0002.wav: not a readable audio file" in capsys.readouterr().err
    assert not out.exists()
