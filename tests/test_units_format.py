"""The unit-set format: meta.json keys, line layout, audio resolution, conversions, embeddings, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from speechunits.audio import write_audio
from speechunits.errors import UnitFormatError
from speechunits.units import (
    UnitRecord,
    UnitSetMeta,
    UnitSetWriter,
    frames_to_runs,
    merge_shards,
    num_frames,
    read_embeddings,
    read_meta,
    read_units,
    reconcile_frames_and_audio,
    reconcile_length,
    runs_to_frames,
    segments_to_frame_grid,
    validate_unit_set,
)

REC = dict(audio="a.wav", num_samples=16000, sample_rate=16000, starts=[0, 10], ends=[5, 20])


def test_meta_json_keys_and_exact_frame_rate(tmp_path: Path) -> None:
    out = tmp_path / "set"
    with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, vocab_size=100,
                       special_ids={"silence": 99, "pad": 0}, producer={"checkpoint_sha256": "ab" * 32},
                       source_manifest="data/train", audio_root="../wavs") as w:
        w.add(id="x", **REC, units=[3, 4])
    meta = json.loads((out / "meta.json").read_text())
    assert meta == {
        "format": "speechunits.units/1", "kind": "syllable", "frame_rate": "16000/320", "frame_rate_hz": 50.0,
        "sample_rate": 16000, "hop": 320, "interval_convention": "[start, end)", "vocab_size": 100,
        "embedding_dim": None, "special_ids": {"pad": 0, "bos": None, "eos": None, "silence": 99},
        "producer": {"checkpoint_sha256": "ab" * 32}, "source_manifest": "data/train", "audio_root": "../wavs",
        "num_utterances": 1, "num_tokens": 2,
    }
    m = read_meta(out)
    assert isinstance(m, UnitSetMeta) and m.frame_rate == "16000/320" and m.frame_rate_hz == 50.0
    assert (out / "units.jsonl").read_text() == (
        '{"id":"x","audio":"a.wav","num_samples":16000,"sample_rate":16000,"starts":[0,10],"ends":[5,20],'
        '"units":[3,4]}\n')


def test_non_integer_frame_rate_is_kept_exact(tmp_path: Path) -> None:
    with UnitSetWriter(tmp_path, kind="frame", sample_rate=22050, hop=256) as w:
        w.add(id="x", **{**REC, "sample_rate": 22050, "num_samples": 22050})
    m = read_meta(tmp_path)
    assert m.frame_rate == "22050/256" and m.frame_rate_hz == pytest.approx(86.1328125)


def test_audio_resolves_against_unit_dir_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wavs = tmp_path / "corpus" / "wavs"
    out = tmp_path / "exp" / "units"
    with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320, audio_root="../../corpus/wavs") as w:
        w.add(id="a", **{**REC, "audio": str(wavs / "spk" / "a.wav")})  # absolute under the root -> stored relative
        w.add(id="b", **{**REC, "audio": "/elsewhere/b.wav"})  # outside the root -> kept absolute
    recs = list(read_units(out))
    assert [r.audio for r in recs] == ["spk/a.wav", "/elsewhere/b.wav"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    meta = read_meta(out)
    assert meta.resolve_audio(recs[0]) == (out / "../../corpus/wavs/spk/a.wav").absolute()
    assert meta.resolve_audio(recs[0]).resolve() == (wavs / "spk" / "a.wav").resolve()
    assert meta.resolve_audio(recs[1]) == Path("/elsewhere/b.wav")
    # moving the audio = editing one line of meta.json
    meta_d = json.loads((out / "meta.json").read_text())
    meta_d["audio_root"] = "/new/place"
    (out / "meta.json").write_text(json.dumps(meta_d))
    assert read_meta(out).resolve_audio(recs[0]) == Path("/new/place/spk/a.wav")


def test_lines_sorted_by_id_and_record_api(tmp_path: Path) -> None:
    with UnitSetWriter(tmp_path, kind="frame", sample_rate=16000, hop=320) as w:
        for utt in ["b", "a", "c10", "c9", "Z", "é"]:
            w.add(id=utt, **REC, text="héllo \"q\"\n", speaker="s1", f0=np.array([100.5, 0.0]))
    recs = list(read_units(tmp_path))
    assert [r.id for r in recs] == ["Z", "a", "b", "c10", "c9", "é"]
    r = recs[0]
    assert r.text == "héllo \"q\"\n" and r.speaker == "s1" and r.f0 == [100.5, 0.0] and r.loudness is None
    assert r.num_tokens == 2 and r.duration == 1.0
    assert UnitRecord.from_dict(r.to_dict()) == r and "units" not in r.to_dict()
    assert len((tmp_path / "units.jsonl").read_text(encoding="utf-8").splitlines()) == 6  # newline escaped


def test_numpy_inputs_are_accepted(tmp_path: Path) -> None:
    with UnitSetWriter(tmp_path, kind="frame", sample_rate=16000, hop=320, vocab_size=8) as w:
        w.add(id="a", audio=Path("a.wav"), num_samples=np.int64(16000), sample_rate=16000,
              starts=np.array([0, 3]), ends=np.array([3, 7], dtype=np.int32), units=np.array([1, 2], dtype=np.uint8))
    (rec,) = read_units(tmp_path)
    assert rec.starts == [0, 3] and rec.ends == [3, 7] and rec.units == [1, 2] and type(rec.units[0]) is int


def test_conversions() -> None:
    assert num_frames(16000, 320) == 50 and num_frames(16001, 320) == 51 and num_frames(0, 320) == 0
    assert frames_to_runs([7, 7, 7, 2, 2, 7]) == ([7, 2, 7], [0, 3, 5], [3, 5, 6])
    assert frames_to_runs([]) == ([], [], [])
    assert runs_to_frames([7, 2], [0, 3], [3, 5]).tolist() == [7, 7, 7, 2, 2]
    with pytest.raises(UnitFormatError, match="no silence id"):
        runs_to_frames([7, 2], [0, 4], [3, 5])
    grid = segments_to_frame_grid([1, 4], [3, 6], [5, 6], num_frames=8, silence_id=0)
    assert grid.tolist() == [0, 5, 5, 0, 6, 6, 0, 0]
    # one frame of overshoot is cut off, more is an error
    assert segments_to_frame_grid([1, 4], [3, 7], [5, 6], num_frames=6, silence_id=0).tolist() == [0, 5, 5, 0, 6, 6]
    with pytest.raises(UnitFormatError, match="more than 1 past"):
        segments_to_frame_grid([1, 4], [3, 8], [5, 6], num_frames=6, silence_id=0)
    with pytest.raises(UnitFormatError):
        segments_to_frame_grid([1, 2], [3, 4], [5, 6], num_frames=6, silence_id=0)  # overlap
    frames = np.arange(12)
    assert reconcile_length(frames, 10).tolist() == list(range(10))
    assert len(reconcile_length(frames, 13)) == 12  # short by one: unchanged, never padded
    with pytest.raises(UnitFormatError, match="refusing to pad"):
        reconcile_length(frames, 14)
    f, wav = reconcile_frames_and_audio(np.arange(10), np.zeros(320 * 10 + 100), 320)
    assert len(f) == 10 and len(wav) == 3200
    f, wav = reconcile_frames_and_audio(np.arange(12), np.zeros(320 * 10), 320)
    assert len(f) == 10 and len(wav) == 3200


def test_embeddings_layout_and_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    embs = {u: rng.standard_normal((2, 6)).astype(np.float32) for u in ["b", "a"]}
    with UnitSetWriter(tmp_path, kind="syllable", sample_rate=16000, hop=320) as w:
        for utt, e in embs.items():
            w.add(id=utt, **REC, embeddings=e)
    index = json.loads((tmp_path / "embeddings" / "index.json").read_text())
    assert index == {"b": ["shard.0.npy", 0, 2], "a": ["shard.0.npy", 2, 4]}
    shard = np.load(tmp_path / "embeddings" / "shard.0.npy")
    assert shard.dtype == np.float16 and shard.shape == (4, 6)
    got = read_embeddings(tmp_path, "a")
    assert isinstance(got, np.memmap) and got.dtype == np.float16
    np.testing.assert_array_equal(got, embs["a"].astype(np.float16))
    assert read_meta(tmp_path).embedding_dim == 6
    assert validate_unit_set(tmp_path).has_embeddings


def test_check_audio(tmp_path: Path) -> None:
    write_audio(tmp_path / "wav" / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "units"
    with UnitSetWriter(out, kind="frame", sample_rate=16000, hop=320, audio_root="../wav") as w:
        w.add(id="a", **REC)
    assert validate_unit_set(out, check_audio=True).audio_checked == 1
    (tmp_path / "wav" / "a.wav").unlink()
    assert validate_unit_set(out).num_utterances == 1
    with pytest.raises(UnitFormatError, match=r"units.jsonl:1: utterance 'a': audio file .*a.wav does not exist"):
        validate_unit_set(out, check_audio=True)


def _resumable(out: Path, **kw) -> UnitSetWriter:
    return UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, job=0, nj=1, resume=True, **kw)


@pytest.mark.parametrize("with_emb", [False, True])
def test_kill_and_resume_yields_each_utterance_once(tmp_path: Path, with_emb: bool) -> None:
    out = tmp_path / "set"
    ids = [f"u{i:02d}" for i in range(20)]
    emb = {u: np.full((2, 3), i, dtype=np.float32) for i, u in enumerate(ids)}

    def add(w: UnitSetWriter, utt: str) -> None:
        w.add(id=utt, **REC, embeddings=emb[utt] if with_emb else None)

    with pytest.raises(KeyboardInterrupt):  # the job is killed after 12 utterances
        with _resumable(out, fsync_every=5) as w:
            for utt in ids[:12]:
                add(w, utt)
            raise KeyboardInterrupt
    partial = out / "units.0.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 12 and not (out / "units.0.jsonl").exists()
    # simulate a kill in the middle of writing line 12 (and its embedding rows already on disk)
    data = partial.read_bytes()
    partial.write_bytes(data[: len(data) - 17])
    w = _resumable(out)
    assert w.done_ids == set(ids[:11])
    with w:
        for utt in ids:
            if utt not in w.done_ids:
                add(w, utt)
    assert not partial.exists() and not list(out.rglob("*.partial*"))
    merge_shards(out, 1)
    recs = list(read_units(out))
    assert [r.id for r in recs] == ids  # every utterance exactly once
    if with_emb:
        for i, utt in enumerate(ids):
            np.testing.assert_array_equal(read_embeddings(out, utt), np.full((2, 3), i, dtype=np.float16))


def test_resume_drops_lines_whose_embeddings_never_reached_disk(tmp_path: Path) -> None:
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        with _resumable(out) as w:
            for i in range(4):
                w.add(id=f"u{i}", **REC, embeddings=np.full((2, 3), i))
            raise KeyboardInterrupt
    raw = out / "embeddings" / "shard.0.partial.raw"
    raw.write_bytes(raw.read_bytes()[: 2 * 3 * 2 * 3 - 1])  # 2.x utterances' rows survived
    w = _resumable(out)
    assert w.done_ids == {"u0", "u1"}
    with w:
        w.add(id="u2", **REC, embeddings=np.full((2, 3), 2))
        with pytest.raises(UnitFormatError, match="already finished by a previous run"):
            w.add(id="u0", **REC, embeddings=np.full((2, 3), 0))
        w.add(id="u3", **REC, embeddings=np.full((2, 3), 3))
    merge_shards(out, 1)
    for i in range(4):
        assert read_embeddings(out, f"u{i}")[0, 0] == i


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        with _resumable(out) as w:
            w.add(id="a", **REC)
            raise KeyboardInterrupt
    with pytest.raises(UnitFormatError, match="partial shard was written with different settings .*producer"):
        _resumable(out, producer={"threshold": 0.9})


def test_resume_needs_job_and_sharded_names(tmp_path: Path) -> None:
    with pytest.raises(UnitFormatError, match="resume=True needs job"):
        UnitSetWriter(tmp_path, kind="frame", sample_rate=16000, hop=320, resume=True)
    with pytest.raises(UnitFormatError, match="0 <= job < nj"):
        UnitSetWriter(tmp_path, kind="frame", sample_rate=16000, hop=320, job=2, nj=2)
    with UnitSetWriter(tmp_path, kind="frame", sample_rate=16000, hop=320, job=1, nj=2) as w:
        w.add(id="a", **REC, embeddings=np.zeros((2, 2)))
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == [os.path.join("embeddings", "index.1.json"), os.path.join("embeddings", "shard.1.npy"),
                     "meta.1.json", "units.1.jsonl"]
