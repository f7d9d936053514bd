"""Property tests (hypothesis): the unit-set reader/writer round trip is lossless."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechunits.units import (
    UnitRecord,
    UnitSetWriter,
    export_fairseq,
    frames_to_runs,
    import_fairseq_units,
    iter_embeddings,
    merge_shards,
    read_meta,
    read_units,
    runs_to_frames,
    validate_unit_set,
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOP = 320
ID_CHARS = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="|")


@st.composite
def segment_layout(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Random non-overlapping [start, end) segments, with or without gaps."""
    n = draw(st.integers(0, 12))
    starts, ends, pos = [], [], 0
    for _ in range(n):
        pos += draw(st.integers(0, 4))
        length = draw(st.integers(1, 6))
        starts.append(pos)
        ends.append(pos + length)
        pos += length
    return starts, ends


@st.composite
def unit_set(draw: st.DrawFn) -> dict:
    """A random unit set: records (+ optional units/speaker/text/f0/loudness/embeddings) and writer args."""
    vocab = draw(st.integers(1, 50))
    quantized = draw(st.booleans())
    dim = draw(st.one_of(st.none(), st.integers(1, 5)))
    with_f0 = draw(st.booleans())
    ids = draw(st.lists(st.text(ID_CHARS, min_size=1, max_size=8), min_size=0, max_size=8, unique=True))
    records, embs = [], {}
    for utt in ids:
        starts, ends = draw(segment_layout())
        n = len(starts)
        last = ends[-1] if ends else 0
        num_samples = draw(st.integers(max(0, (last - 1) * HOP), last * HOP + 5000))
        floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
        rec = UnitRecord(
            id=utt, audio=draw(st.sampled_from(["a.wav", "sub/dir/ü b.flac", "/abs/x.wav"])), num_samples=num_samples,
            sample_rate=16000, starts=starts, ends=ends,
            units=draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n)) if quantized else None,
            speaker=draw(st.one_of(st.none(), st.text(max_size=5))),
            text=draw(st.one_of(st.none(), st.text(max_size=20))),  # any unicode, incl. quotes/newlines
            f0=draw(st.lists(floats, min_size=n, max_size=n)) if with_f0 else None,
            loudness=draw(st.one_of(st.none(), st.lists(floats, min_size=n, max_size=n))),
        )
        records.append(rec)
        if dim is not None:
            embs[utt] = np.asarray(draw(st.lists(st.floats(-100, 100, width=16), min_size=n * dim, max_size=n * dim)),
                                   dtype=np.float16).reshape(n, dim)
    kwargs = dict(kind=draw(st.sampled_from(["syllable", "frame", "phone"])), sample_rate=16000, hop=HOP,
                  vocab_size=vocab if quantized else None, producer={"seed": draw(st.integers(0, 9))},
                  embedding_dim=dim)
    return {"records": records, "embs": embs if dim is not None else None, "kwargs": kwargs}


def write(out: Path, case: dict, job: int | None = None, nj: int | None = None, subset: list | None = None) -> None:
    with UnitSetWriter(out, job=job, nj=nj, **case["kwargs"]) as w:
        for rec in case["records"] if subset is None else subset:
            w.add(**rec.to_dict(), embeddings=None if case["embs"] is None else case["embs"][rec.id])


def assert_same(out: Path, case: dict) -> None:
    expected = sorted(case["records"], key=lambda r: r.id)
    assert list(read_units(out)) == expected
    meta = read_meta(out)
    assert meta.kind == case["kwargs"]["kind"] and meta.vocab_size == case["kwargs"]["vocab_size"]
    assert meta.producer == case["kwargs"]["producer"]
    assert meta.num_utterances == len(expected)
    if case["embs"] is not None:
        got = dict(iter_embeddings(out))
        assert sorted(got) == sorted(case["embs"])
        for utt, arr in got.items():
            assert arr.dtype == np.float16
            np.testing.assert_array_equal(arr, case["embs"][utt])
    else:
        assert not (out / "embeddings" / "index.json").exists()
    validate_unit_set(out)


@SETTINGS
@given(case=unit_set())
def test_write_read_is_lossless(case: dict) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        write(tmp / "set", case)
        assert_same(tmp / "set", case)
    finally:
        shutil.rmtree(tmp)


@SETTINGS
@given(case=unit_set(), nj=st.integers(1, 4), data=st.data())
def test_sharded_merge_equals_unsharded(case: dict, nj: int, data: st.DataObject) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        shards = [data.draw(st.integers(0, nj - 1)) for _ in case["records"]]  # any assignment, not just round robin
        for job in range(nj):
            write(tmp / "sharded", case, job, nj, [r for r, s in zip(case["records"], shards) if s == job])
        merge_shards(tmp / "sharded", nj)
        write(tmp / "plain", case)
        assert_same(tmp / "sharded", case)
        assert (tmp / "sharded" / "units.jsonl").read_bytes() == (tmp / "plain" / "units.jsonl").read_bytes()
        assert not list((tmp / "sharded").glob("units.*.jsonl")) and not list((tmp / "sharded").glob("meta.*.json"))
    finally:
        shutil.rmtree(tmp)


@SETTINGS
@given(frames=st.lists(st.integers(0, 5), max_size=200))
def test_frames_runs_identity(frames: list[int]) -> None:
    units, starts, ends = frames_to_runs(frames)
    assert all(a != b for a, b in zip(units, units[1:]))  # maximal runs
    assert starts == [0, *ends[:-1]] if frames else starts == []
    assert runs_to_frames(units, starts, ends, len(frames)).tolist() == frames


@SETTINGS
@given(lines=st.dictionaries(st.text(ID_CHARS, min_size=1, max_size=6).filter(lambda s: s.strip() == s),
                             st.lists(st.integers(0, 30), max_size=60), max_size=6))
def test_fairseq_export_import_roundtrip(lines: dict[str, list[int]]) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        src = tmp / "in.txt"
        src.write_text("".join(f"{k}|{' '.join(map(str, v))}\n" for k, v in lines.items()), encoding="utf-8")
        import_fairseq_units(src, tmp / "set", frame_rate="50", vocab_size=31)
        export_fairseq(tmp / "set", tmp / "out.txt", expand=True)
        got = {}
        for line in (tmp / "out.txt").read_text(encoding="utf-8").splitlines():
            k, _, v = line.partition("|")
            got[k] = [int(t) for t in v.split()]
        assert got == lines
        for rec in read_units(tmp / "set"):  # stored deduplicated, one token per run
            assert rec.units == frames_to_runs(lines[rec.id])[0]
    finally:
        shutil.rmtree(tmp)
