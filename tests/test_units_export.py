"""Exporters, the fairseq importer, and the validate/merge/export/import CLI verbs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.cli import main
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import UnitFormatError
from speechunits.units import (
    UnitSetWriter,
    export_fairseq,
    export_kaldi,
    export_resynth,
    export_textless,
    import_fairseq_units,
    read_meta,
    read_units,
)


def syllable_set(out: Path, silence: int | None = 9, quantized: bool = True) -> Path:
    with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, vocab_size=10, audio_root="wavs",
                       special_ids={"silence": silence}) as w:
        w.add(id="utt2", audio="b.wav", num_samples=3200, sample_rate=16000, starts=[2, 3, 7], ends=[3, 5, 9],
              units=[4, 4, 1] if quantized else None)
        w.add(id="utt1", audio="a.wav", num_samples=8000, sample_rate=16000, starts=[0, 2], ends=[2, 3],
              units=[3, 5] if quantized else None)
    return out


def test_kaldi_and_fairseq_lines(tmp_path: Path) -> None:
    unit_dir = syllable_set(tmp_path / "set")
    export_kaldi(unit_dir, tmp_path / "text")
    assert (tmp_path / "text").read_text() == "utt1 3 5\nutt2 4 4 1\n"
    export_fairseq(unit_dir, tmp_path / "fs.txt")
    assert (tmp_path / "fs.txt").read_text() == "utt1|3 5\nutt2|4 4 1\n"
    export_fairseq(unit_dir, tmp_path / "fs_frames.txt", expand=True)  # gaps -> silence id 9
    assert (tmp_path / "fs_frames.txt").read_text() == "utt1|3 3 5\nutt2|9 9 4 4 4 9 9 1 1\n"


def test_resynth_dict_lines(tmp_path: Path) -> None:
    unit_dir = syllable_set(tmp_path / "set")
    export_resynth(unit_dir, tmp_path / "train.txt")
    lines = [ast.literal_eval(line) for line in (tmp_path / "train.txt").read_text().splitlines()]
    assert lines[0] == {"audio": str((unit_dir / "wavs" / "a.wav").absolute()), "hubert": "3 3 5", "duration": 0.5}
    assert lines[1]["hubert"] == "9 9 4 4 4 9 9 1 1" and lines[1]["duration"] == 0.2
    export_resynth(unit_dir, tmp_path / "dedup.txt", expand=False, key="code")
    assert ast.literal_eval((tmp_path / "dedup.txt").read_text().splitlines()[1])["code"] == "4 4 1"


def test_textless_parallel_files(tmp_path: Path) -> None:
    unit_dir = syllable_set(tmp_path / "set")
    units, durs = export_textless(unit_dir, tmp_path / "out" / "train")
    assert units.name == "train.units" and durs.name == "train.durations"
    assert units.read_text() == "3 5\n9 4 4 9 1\n"
    assert durs.read_text() == "2 1\n2 1 2 2 2\n"


def test_gaps_without_silence_id_and_unquantized_sets_fail_clearly(tmp_path: Path) -> None:
    unit_dir = syllable_set(tmp_path / "nosil", silence=None)
    export_fairseq(unit_dir, tmp_path / "ok.txt")  # per token: gaps do not matter
    with pytest.raises(UnitFormatError, match=r"units.jsonl:2: utterance 'utt2' has gaps .* no 'silence'"):
        export_fairseq(unit_dir, tmp_path / "bad.txt", expand=True)
    assert not (tmp_path / "bad.txt").exists()
    raw = syllable_set(tmp_path / "raw", quantized=False)
    for fn in (export_kaldi, export_fairseq, export_resynth, export_textless):
        with pytest.raises(UnitFormatError, match=r"units.jsonl:1: utterance 'utt1' has no 'units'.*not quantized"):
            fn(raw, tmp_path / "x")
    assert not list(tmp_path.glob("x*"))


def test_import_with_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "data.jsonl"
    write_jsonl_manifest([Utterance(id="a", audio="/c/a.wav", text="hi", speaker="s", num_samples=1000, sample_rate=16000),
                          Utterance(id="b", audio="/c/b.wav", num_samples=330, sample_rate=16000)], manifest)
    src = tmp_path / "in.txt"
    src.write_text("b|1 1\na|5 5 5 0\n")
    assert import_fairseq_units(src, tmp_path / "set", frame_rate="16000/320", manifest=manifest) == 2
    recs = list(read_units(tmp_path / "set"))
    assert recs[0].id == "a" and recs[0].units == [5, 0] and recs[0].starts == [0, 3] and recs[0].ends == [3, 4]
    assert recs[0].audio == "/c/a.wav" and recs[0].text == "hi" and recs[0].num_samples == 1000
    meta = read_meta(tmp_path / "set")
    assert meta.kind == "frame" and meta.vocab_size == 6 and meta.producer["vocab_size_inferred"] is True
    src.write_text("b|1 1 1 1\n")  # b has 330 samples = 2 frames (+1 tolerance) < 4 frames
    with pytest.raises(UnitFormatError, match=r"in.txt:1: utterance 'b': last end 4 is beyond the audio"):
        import_fairseq_units(src, tmp_path / "set2", manifest=manifest)
    src.write_text("zz|1\n")
    with pytest.raises(UnitFormatError, match=r"in.txt:1: utterance 'zz' is not in the manifest"):
        import_fairseq_units(src, tmp_path / "set2", manifest=manifest)


@pytest.mark.parametrize(("text", "problem"), [("a 1 2\n", "expected 'id|u1 u2 ...'"), ("a|1 x\n", "integers"),
                                               ("a|1\na|2\n", "duplicate id 'a' (first on line 1)"),
                                               ("a|-3\n", "negative unit id")])
def test_import_rejects_bad_lines(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "in.txt").write_text(text)
    with pytest.raises(UnitFormatError, match=r"in.txt:\d: ") as info:
        import_fairseq_units(tmp_path / "in.txt", tmp_path / "set")
    assert problem in str(info.value)
    assert not (tmp_path / "set" / "units.jsonl").exists()


def test_frame_rate_must_divide_sample_rate(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a|1\n")
    with pytest.raises(UnitFormatError, match="not a whole number of samples"):
        import_fairseq_units(tmp_path / "in.txt", tmp_path / "set", frame_rate="30")
    import_fairseq_units(tmp_path / "in.txt", tmp_path / "set", frame_rate="12.5")
    assert read_meta(tmp_path / "set").hop == 1280


def test_cli_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x1|3 3 3 4 4 1\nx0|2 2\n")
    assert main(["import-units", "--format", "fairseq", str(src), "--out", str(tmp_path / "set"),
                 "--frame-rate", "50", "--vocab-size", "8"]) == 0
    assert main(["validate-units", str(tmp_path / "set"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_utterances"] == 2 and report["num_tokens"] == 4 and report["vocab_size"] == 8
    out = tmp_path / "units.txt"
    assert main(["export", "--units", str(tmp_path / "set"), "--format", "fairseq", "--out", str(out), "--expand"]) == 0
    assert out.read_text() == "x0|2 2\nx1|3 3 3 4 4 1\n"
    assert main(["export", "--units", str(tmp_path / "set"), "--format", "kaldi", "--out", str(out)]) == 0
    assert out.read_text() == "x0 2\nx1 3 4 1\n"
    assert main(["export", "--units", str(tmp_path / "set"), "--format", "textless", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t.durations").read_text() == "2\n3 2 1\n"
    # errors: exit status 2 with file:line on stderr
    (tmp_path / "set" / "units.jsonl").write_text('{"id": "x0"\n')
    assert main(["validate-units", str(tmp_path / "set")]) == 2
    assert "units.jsonl:1: invalid JSON" in capsys.readouterr().err


def test_cli_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    for job in range(3):
        with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, job=job, nj=3) as w:
            for i in range(job, 7, 3):
                w.add(id=f"u{i}", audio=f"{i}.wav", num_samples=3200, sample_rate=16000, starts=[0], ends=[4],
                      embeddings=np.full((1, 2), i))
    assert main(["merge-units", str(out), "--nj", "4"]) == 2
    assert "units.3.jsonl: missing 1 of 4 shard(s)" in capsys.readouterr().err
    assert main(["merge-units", str(out), "--nj", "3"]) == 0
    assert "utterances    7" in capsys.readouterr().out
    assert [r.id for r in read_units(out)] == [f"u{i}" for i in range(7)]
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", "meta.json", "units.jsonl"]
    assert main(["merge-units", str(out), "--nj", "3"]) == 0  # already merged: re-validates
