"""Malformed unit sets are rejected with file:line; failed writers leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.errors import UnitFormatError
from speechunits.units import (
    UnitSetWriter,
    merge_shards,
    read_embeddings,
    read_meta,
    read_units,
    validate_unit_set,
)

GOOD = {"id": "a", "audio": "a.wav", "num_samples": 16000, "sample_rate": 16000, "starts": [0, 10], "ends": [5, 20],
        "units": [1, 2]}


def make_set(tmp_path: Path, n: int = 3, **kw) -> Path:
    out = tmp_path / "set"
    with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, vocab_size=10, **kw) as w:
        for i in range(n):
            w.add(**{**GOOD, "id": f"u{i}"}, embeddings=np.ones((2, 4)) if kw.get("embedding_dim") else None)
    return out


def replace_line(unit_dir: Path, lineno: int, text: str) -> None:
    path = unit_dir / "units.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def line_with(**changes) -> str:
    d = {**GOOD, "id": "u1", **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...})


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "u1", "audio": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (line_with(audio=...), "missing required field 'audio'"),
        (line_with(num_samples="16000"), "'num_samples' must be a non-negative integer"),
        (line_with(starts=[0, 10.5]), "'starts' must be a list of integers"),
        (line_with(starts=[0, 10], ends=[5]), "'starts' has 2 entries but 'ends' has 1"),
        (line_with(starts=[0, 10], ends=[5, 10]), "start 10 >= end 10"),
        (line_with(starts=[0, 4], ends=[5, 9]), "start 4 < previous end 5"),
        (line_with(starts=[10, 0], ends=[20, 5]), "start 0 < previous end 20"),
        (line_with(units=[1]), "'units' has 1 entries but there are 2 tokens"),
        (line_with(units=[1, 10]), "unit id 10 >= vocab_size 10"),
        (line_with(units=[-1, 2]), "negative unit id -1"),
        (line_with(ends=[5, 60]), "last end 60 is beyond the audio"),
        (line_with(f0=[1.0]), "'f0' has 1 entries"),
        (line_with(colour="red"), "unknown field"),
        (line_with(id="u 1"), "field 'id' must be a non-empty string without whitespace"),
        (line_with(id="u0"), "duplicate id 'u0'"),
        (line_with(id="a"), "not sorted: id 'a'"),
        ("", "empty line"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    unit_dir = make_set(tmp_path)
    replace_line(unit_dir, 2, line)
    with pytest.raises(UnitFormatError) as info:
        list(read_units(unit_dir))
    msg = str(info.value)
    assert f"units.jsonl:2: " in msg and problem in msg, msg
    with pytest.raises(UnitFormatError, match="units.jsonl:2: "):
        validate_unit_set(unit_dir)


def test_audio_end_tolerance_is_one_frame(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path)
    replace_line(unit_dir, 2, line_with(num_samples=320 * 19 + 1, ends=[5, 21]))  # ceil = 20 frames, +1 ok
    assert len(list(read_units(unit_dir))) == 3
    replace_line(unit_dir, 2, line_with(num_samples=320 * 19 + 1, ends=[5, 22]))
    with pytest.raises(UnitFormatError, match="units.jsonl:2: .*last end 22 is beyond the audio"):
        list(read_units(unit_dir))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update(format="speechunits.units/2"), "unsupported format 'speechunits.units/2'"),
        (lambda m: m.pop("format"), "unsupported format None"),
        (lambda m: m.update(frame_rate=50), "'frame_rate' must be the string '16000/320'"),
        (lambda m: m.update(frame_rate="16000/160"), "'frame_rate' must be the string '16000/320'"),
        (lambda m: m.update(hop=0), "'hop' must be a positive integer"),
        (lambda m: m.update(interval_convention="[start, end]"), "'interval_convention' must be"),
        (lambda m: m["special_ids"].update(silence=10), "special id 'silence'=10 is outside the vocabulary"),
        (lambda m: m["special_ids"].update(blank=3), "unknown special id name"),
        (lambda m: m.pop("kind"), "missing required key 'kind'"),
    ],
)
def test_bad_meta(tmp_path: Path, change, problem: str) -> None:
    unit_dir = make_set(tmp_path)
    meta = json.loads((unit_dir / "meta.json").read_text())
    change(meta)
    (unit_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UnitFormatError, match="meta.json: ") as info:
        read_meta(unit_dir)
    assert problem in str(info.value)


def test_missing_and_unparsable_meta(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path)
    (unit_dir / "meta.json").write_text("{not json")
    with pytest.raises(UnitFormatError, match=r"meta.json:1: invalid JSON"):
        list(read_units(unit_dir))
    (unit_dir / "meta.json").unlink()
    with pytest.raises(UnitFormatError, match="meta.json: missing meta file"):
        validate_unit_set(unit_dir)


def test_count_mismatch_detects_truncated_units_file(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path)
    path = unit_dir / "units.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(UnitFormatError, match="meta.json: num_utterances is 3 but units.jsonl holds 2"):
        validate_unit_set(unit_dir)


def test_partly_quantized_set_is_rejected(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path)
    replace_line(unit_dir, 3, line_with(id="u2", units=...))
    with pytest.raises(UnitFormatError, match="only 2 of 3 utterances have 'units'"):
        validate_unit_set(unit_dir)


def test_truncated_embeddings_shard(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path, embedding_dim=4)
    shard = unit_dir / "embeddings" / "shard.0.npy"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 10])
    with pytest.raises(UnitFormatError, match="shard.0.npy: unreadable or truncated embeddings shard"):
        validate_unit_set(unit_dir)
    with pytest.raises(UnitFormatError, match="shard.0.npy"):
        read_embeddings(unit_dir, "u0")


def test_embedding_rows_must_match_tokens(tmp_path: Path) -> None:
    unit_dir = make_set(tmp_path, embedding_dim=4)
    index_path = unit_dir / "embeddings" / "index.json"
    index = json.loads(index_path.read_text())
    index["u1"][2] -= 1
    index_path.write_text(json.dumps(index))
    with pytest.raises(UnitFormatError, match=r"index.json: utterance 'u1': 1 embedding rows for 2 tokens \(units.jsonl line 2\)"):
        validate_unit_set(unit_dir)
    del index["u1"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(UnitFormatError, match="no embeddings for utterance 'u1'"):
        validate_unit_set(unit_dir)


def _write_shard(out: Path, job: int, nj: int, ids: list[str], **kw) -> None:
    with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320, job=job, nj=nj, **kw) as w:
        for utt in ids:
            w.add(**{**GOOD, "id": utt, "units": None})


def test_duplicate_id_across_shards_names_both(tmp_path: Path) -> None:
    out = tmp_path / "set"
    _write_shard(out, 0, 2, ["a", "dup"])
    _write_shard(out, 1, 2, ["b", "dup", "z"])
    with pytest.raises(UnitFormatError) as info:
        merge_shards(out, 2)
    msg = str(info.value)
    assert "duplicate id 'dup'" in msg and "units.0.jsonl:2" in msg and "units.1.jsonl:2" in msg, msg
    assert not (out / "units.jsonl").exists() and not (out / "meta.json").exists()
    assert (out / "units.0.jsonl").exists() and (out / "units.1.jsonl").exists()  # shards kept


def test_merge_rejects_missing_or_disagreeing_shards(tmp_path: Path) -> None:
    out = tmp_path / "set"
    _write_shard(out, 0, 3, ["a"])
    _write_shard(out, 2, 3, ["c"], producer={"x": 2})
    with pytest.raises(UnitFormatError, match=r"units.1.jsonl: missing 1 of 3 shard\(s\)"):
        merge_shards(out, 3)
    _write_shard(out, 1, 3, ["b"])
    with pytest.raises(UnitFormatError, match="meta.2.json: shard meta disagrees with meta.0.json on producer"):
        merge_shards(out, 3)
    assert not (out / "units.jsonl").exists()


def test_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "set"
    with pytest.raises(RuntimeError):
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320) as w:
            w.add(**{**GOOD, "units": None}, embeddings=np.zeros((2, 3)))
            raise RuntimeError("model crashed")
    assert list(out.iterdir()) == []
    with pytest.raises(UnitFormatError, match="duplicate utterance id 'a'"):
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320, job=0, nj=2) as w:
            w.add(**{**GOOD, "units": None})
            w.add(**{**GOOD, "units": None})
    assert list(out.iterdir()) == []


def test_writer_rejects_bad_records(tmp_path: Path) -> None:
    out = tmp_path / "set"
    with pytest.raises(UnitFormatError) as info:
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320, vocab_size=5) as w:
            w.add(**{**GOOD, "units": [1, 7]})
    assert "units.jsonl: utterance 'a': token 1: unit id 7 >= vocab_size 5" in str(info.value)
    with pytest.raises(UnitFormatError, match="has no embeddings but the unit set has embedding_dim 3"):
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320) as w:
            w.add(**{**GOOD, "id": "a"}, embeddings=np.zeros((2, 3)))
            w.add(**{**GOOD, "id": "b"})
    with pytest.raises(UnitFormatError, match="3 embedding rows for 2 tokens"):
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320) as w:
            w.add(**GOOD, embeddings=np.zeros((3, 3)))
    with pytest.raises(UnitFormatError, match="non-finite in float16"):
        with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320) as w:
            w.add(**GOOD, embeddings=np.full((2, 3), 1e6))
    assert not (out / "units.jsonl").exists()
    assert not [p for p in out.rglob("*") if p.is_file()]
