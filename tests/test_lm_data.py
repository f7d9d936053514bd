"""lm-pack: unit sequences (dedup on/off per kind), the unit set hash, BPE, packing, compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.cli import main
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.lm.bpe import UnitBPE, train_bpe
from speechunits.lm.packed import PackedTokens
from speechunits.lm.tokens import check_compatible, unit_sequences, unit_set_hash
from speechunits.units import UnitSetWriter, read_meta

SR = 16000
VOCAB = 6  # ids 0..4 and silence 5


def write_set(out: Path, kind: str, utts: dict[str, tuple[list[int], list[int], list[int]]],
              codebook: str = "abc", path: str = "/ckpt/km.pt", vocab_size: int | None = VOCAB) -> Path:
    """A unit set of ``{id: (units, starts, ends)}`` with a codebook block in the producer."""
    producer = {"codebook": {"hash": codebook, "k": VOCAB - 1, "path": path}, "features": {"path": "/enc.pt"}}
    special = {"silence": VOCAB - 1} if vocab_size else {}
    with UnitSetWriter(out, kind=kind, sample_rate=SR, hop=320, vocab_size=vocab_size, producer=producer,
                       special_ids=special) as w:
        for utt, (units, starts, ends) in utts.items():
            w.add(id=utt, audio=f"{utt}.wav", num_samples=ends[-1] * 320 if ends else 3200, sample_rate=SR,
                  starts=starts, ends=ends, units=units if vocab_size else None)
    return out


FRAME_UTTS = {"a": ([1, 2, 1], [0, 3, 5], [3, 5, 6]), "b": ([4], [0], [2])}
SYL_UTTS = {"a": ([3, 3, 1, 1, 2], [0, 4, 6, 9, 12], [3, 6, 8, 11, 14]), "b": ([], [], [])}


@pytest.fixture()
def frame_set(tmp_path: Path) -> Path:
    return write_set(tmp_path / "frame", "frame", FRAME_UTTS)


@pytest.fixture()
def syl_set(tmp_path: Path) -> Path:
    return write_set(tmp_path / "syl", "syllable", SYL_UTTS)


def seqs(unit_dir: Path, dedup: bool) -> dict[str, list[int]]:
    return {u: s.tolist() for u, s, _ in unit_sequences(unit_dir, dedup=dedup)}


def test_frame_dedup_keeps_runs_and_expand_gives_one_id_per_frame(frame_set: Path) -> None:
    assert seqs(frame_set, True) == {"a": [1, 2, 1], "b": [4]}
    assert seqs(frame_set, False) == {"a": [1, 1, 1, 2, 2, 1], "b": [4, 4]}
    secs = {u: s for u, _, s in unit_sequences(frame_set, dedup=True)}
    assert secs == {"a": pytest.approx(6 * 320 / SR), "b": pytest.approx(2 * 320 / SR)}


def test_syllable_dedup_merges_repeats_and_off_keeps_tokens_without_gaps(syl_set: Path) -> None:
    assert seqs(syl_set, False) == {"a": [3, 3, 1, 1, 2], "b": []}
    assert seqs(syl_set, True) == {"a": [3, 1, 2], "b": []}


def test_unquantized_set_is_an_error_naming_the_directory(tmp_path: Path) -> None:
    bare = write_set(tmp_path / "bare", "syllable", {"a": ([], [0], [2])}, vocab_size=None)
    with pytest.raises(UnitFormatError, match="run quantize first") as err:
        unit_set_hash(read_meta(bare))
    assert "bare" in str(err.value)
    with pytest.raises(UnitFormatError, match="run quantize first"):
        list(unit_sequences(bare, dedup=True))


def test_hash_ignores_paths_but_not_the_codebook(tmp_path: Path) -> None:
    h = unit_set_hash(read_meta(write_set(tmp_path / "x", "frame", {"a": FRAME_UTTS["a"]})))
    moved = unit_set_hash(read_meta(write_set(tmp_path / "y", "frame", {"a": FRAME_UTTS["a"]}, path="/elsewhere/km.pt")))
    other = unit_set_hash(read_meta(write_set(tmp_path / "z", "frame", {"a": FRAME_UTTS["a"]}, codebook="def")))
    syl = unit_set_hash(read_meta(write_set(tmp_path / "s", "syllable", {"a": FRAME_UTTS["a"]})))
    assert h == moved
    assert len({h, other, syl}) == 3
    assert unit_set_hash(read_meta(tmp_path / "x").to_dict()) == h


def test_malformed_unit_file_reports_file_and_line(frame_set: Path, tmp_path: Path) -> None:
    units = frame_set / "units.jsonl"
    lines = units.read_text().splitlines()
    lines[1] = lines[1].replace('"units":[4]', '"units":[4,4]')
    units.write_text("\n".join(lines) + "\n")
    with pytest.raises(UnitFormatError, match=r"units\.jsonl:2: "):
        list(unit_sequences(frame_set, dedup=True))
    assert main(["lm-pack", "--units", str(frame_set), "--out", str(tmp_path / "p")]) == 2


def test_bpe_round_trip_is_exact_and_covers_unseen_units(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = [rng.choice([0, 1, 2, 1, 1], size=rng.integers(5, 40)) for _ in range(30)]
    bpe = train_bpe(train, 12, tmp_path / "m", unit_vocab_size=VOCAB)
    assert isinstance(bpe, UnitBPE) and bpe.vocab_size == 12 and bpe.unit_vocab_size == VOCAB
    assert (tmp_path / "m.model").is_file() and len(bpe.sha256) == 64
    again = UnitBPE(tmp_path / "m.model")
    for seq in train[:5] + [np.array([5, 4, 3, 3, 0, 1, 1]), np.array([], dtype=np.int64)]:
        pieces = again.encode(seq)
        assert pieces.dtype == np.int64 and (pieces >= 0).all() and (pieces < again.vocab_size).all()
        np.testing.assert_array_equal(again.decode(pieces), seq)
    assert sum(len(again.encode(s)) for s in train) < sum(len(s) for s in train)  # merges happened
    with pytest.raises(ConfigError, match="outside"):
        again.encode([VOCAB])
    with pytest.raises(ConfigError, match="must exceed"):
        train_bpe(train, VOCAB, tmp_path / "small", unit_vocab_size=VOCAB)


def test_pack_round_trip_producer_and_skip(frame_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "lm" / "train"
    assert main(["lm-pack", "--units", str(frame_set), "--out", str(prefix), "--dedup", "false"]) == 0
    out = capsys.readouterr().out
    assert "2 sequences, 8 tokens" in out
    packed = PackedTokens(prefix)
    assert packed.ids == ["a", "b"] and packed.vocab_size == VOCAB
    assert packed[0].tolist() == [1, 1, 1, 2, 2, 1] and packed[1].tolist() == [4, 4]
    prod = packed.producer
    assert prod["unit_set_hash"] == unit_set_hash(read_meta(frame_set))
    assert prod["dedup"] is False and prod["bpe"] is None and prod["kind"] == "frame"
    assert prod["frame_rate_hz"] == 50.0 and prod["unit_vocab_size"] == VOCAB
    mtime = (tmp_path / "lm" / "train.json").stat().st_mtime_ns
    assert main(["lm-pack", "--units", str(frame_set), "--out", str(prefix), "--dedup", "false"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (tmp_path / "lm" / "train.json").stat().st_mtime_ns == mtime
    assert main(["lm-pack", "--units", str(frame_set), "--out", str(prefix), "--dedup", "true"]) == 0
    assert "wrote" in capsys.readouterr().out and PackedTokens(prefix)[0].tolist() == [1, 2, 1]


def test_pack_with_bpe_train_then_dev(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    utts = {}
    for i in range(20):
        units = rng.choice([0, 1, 2, 3], size=12).tolist()
        utts[f"u{i:02d}"] = (units, list(range(0, 24, 2)), list(range(1, 25, 2)))
    train = write_set(tmp_path / "train", "syllable", utts)
    dev = write_set(tmp_path / "dev", "syllable", {"d": ([4, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4])})
    tp, dp = tmp_path / "p" / "train", tmp_path / "p" / "dev"
    assert main(["lm-pack", "--units", str(train), "--out", str(tp), "--dedup", "false", "--bpe-vocab", "10"]) == 0
    assert main(["lm-pack", "--units", str(dev), "--out", str(dp), "--dedup", "false",
                 "--bpe-model", f"{tp}.bpe.model"]) == 0
    t, d = PackedTokens(tp), PackedTokens(dp)
    bpe = UnitBPE(f"{tp}.bpe.model")
    assert t.vocab_size == d.vocab_size == 10 == t.producer["bpe"]["vocab_size"]
    assert t.producer["bpe"]["sha256"] == d.producer["bpe"]["sha256"] == bpe.sha256
    assert bpe.decode(d[0]).tolist() == [4, 0, 1, 2]
    assert bpe.decode(t[3]).tolist() == utts["u03"][0]
    capsys.readouterr()
    assert main(["lm-pack", "--units", str(train), "--out", str(tp), "--dedup", "false", "--bpe-vocab", "10"]) == 0
    assert "up to date" in capsys.readouterr().out
    check_compatible(t.producer, d.producer, "train", "dev")


def test_check_compatible_names_both_sides() -> None:
    a = {"unit_set_hash": "h1", "dedup": True, "bpe": None}
    check_compatible(a, dict(a, unit_set="elsewhere"), "model", "data")
    for b in (dict(a, unit_set_hash="h2"), dict(a, dedup=False), dict(a, bpe={"sha256": "s"})):
        with pytest.raises(ConfigError, match="model and data") as err:
            check_compatible(a, b, "model", "data")
        assert json.dumps(a)  # a is unchanged
        assert "vs" in str(err.value)


def test_packed_set_round_trip_and_damage_is_named(tmp_path: Path) -> None:
    """uint16 and uint32 storage, empty sequences, and every damaged file is an error naming it."""
    from speechunits.lm.packed import packed_files, write_packed

    seqs = [np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([70000, 5])]
    header = write_packed(tmp_path / "big", ["a", "b", "c"], seqs, [1.0, 0.5, 2.0], vocab_size=70001, producer={"k": 1})
    p = PackedTokens(tmp_path / "big")
    assert header["dtype"] == "uint32" and p.ids == ["a", "b", "c"] and p.lengths.tolist() == [3, 0, 2]
    assert [p[i].tolist() for i in range(3)] == [s.tolist() for s in seqs] and p.audio_seconds == 3.5
    write_packed(tmp_path / "small", ["a"], [np.array([4, 4])], [1.0], vocab_size=10, producer={})
    assert PackedTokens(tmp_path / "small").dtype == np.uint16
    with pytest.raises(ValueError, match="c: tokens must be"):
        write_packed(tmp_path / "bad", ["a", "c"], [np.array([1]), np.array([10])], [1.0, 1.0], vocab_size=10,
                     producer={})
    assert not packed_files(tmp_path / "bad")["json"].exists()  # no header: the set does not exist
    files = packed_files(tmp_path / "big")
    files["bin"].write_bytes(files["bin"].read_bytes()[:-4])
    with pytest.raises(UnitFormatError, match=r"big\.bin: expected 20 bytes .* truncated"):
        PackedTokens(tmp_path / "big")
    files["json"].unlink()
    with pytest.raises(UnitFormatError, match=r"big\.json: no packed-set header"):
        PackedTokens(tmp_path / "big")
