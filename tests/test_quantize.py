"""`speechunits cluster` / `speechunits quantize`, in-place kill safety, frame units."""

from __future__ import annotations

import ast
import itertools
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from speechunits.cli import main
from speechunits.errors import ConfigError, UnitFormatError
from speechunits.quantize import apply as apply_mod
from speechunits.quantize import cluster_cli
from speechunits.quantize.apply import quantize_unit_set
from speechunits.quantize.codebook import Assigner, load_codebook, save_codebook
from speechunits.quantize.frame_units import FrameItem, write_frame_units
from speechunits.quantize.sampling import embeddings_hash, sample_embeddings
from speechunits.units import UnitSetWriter, read_embeddings, read_meta, read_units, runs_to_frames, validate_unit_set
from speechunits.units.meta import write_meta

DIM = 8
K = 4


def _dirs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(K, DIM))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def make_unit_set(root: Path, n_utts: int = 6, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """A syllable unit set whose token embeddings come from K directions; returns (dir, true labels per id)."""
    rng = np.random.default_rng(seed)
    dirs = _dirs()
    out = root / "units"
    truth: dict[str, np.ndarray] = {}
    with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, audio_root="../wavs",
                       producer={"model": "test"}) as w:
        for i in range(n_utts):
            n_tok = int(rng.integers(3, 9))
            starts = np.arange(n_tok) * 5
            ends = starts + 4
            labels = rng.integers(0, K, n_tok)
            emb = (dirs[labels] + 0.05 * rng.normal(size=(n_tok, DIM))) * rng.uniform(0.5, 3.0, (n_tok, 1))
            uid = f"utt{i:02d}"
            w.add(id=uid, audio=f"{uid}.wav", num_samples=16000, sample_rate=16000, starts=starts, ends=ends,
                  speaker="spk", text="a b", embeddings=emb)
            truth[uid] = labels
    return out, truth


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def consistent(units: list[int], truth: np.ndarray, mapping: dict[int, int]) -> bool:
    for u, t in zip(units, truth.tolist()):
        if mapping.setdefault(int(t), u) != u:
            return False
    return True


def test_sampling_of_a_unit_set(tmp_path: Path) -> None:
    unit_dir, truth = make_unit_set(tmp_path)
    total = sum(len(v) for v in truth.values())
    everything = sample_embeddings(unit_dir, None, progress=False)
    assert everything.vectors.shape == (total, DIM) and everything.total == total
    assert np.array_equal(everything.vectors[: len(truth["utt00"])], read_embeddings(unit_dir, "utt00"))
    rows = {r.tobytes() for r in everything.vectors}
    for method in ("uniform", "reservoir"):
        a = sample_embeddings(unit_dir, 10, seed=1, method=method, progress=False)
        b = sample_embeddings(unit_dir, 10, seed=1, method=method, progress=False)
        assert a.vectors.shape == (10, DIM) and np.array_equal(a.vectors, b.vectors)
        assert all(r.tobytes() in rows for r in a.vectors)
        assert len({r.tobytes() for r in a.vectors}) == 10  # without replacement
    h = embeddings_hash(unit_dir)
    assert h == embeddings_hash(unit_dir) and len(h) == 64


def test_cluster_then_quantize_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit_dir, truth = make_unit_set(tmp_path)
    book_path = tmp_path / "km.pt"
    assert main(["cluster", "--units", str(unit_dir), "--k", str(K), "--out", str(book_path), "--metric", "cosine",
                 "--quiet", "--seed", "0"]) == 0
    book = load_codebook(book_path)
    assert book.k == K and book.metric == "cosine" and book.meta["source_hash"] == embeddings_hash(unit_dir)
    assert book.meta["settings"]["k"] == K
    emb_before = snapshot(unit_dir / "embeddings")

    assert main(["quantize", "--units", str(unit_dir), "--codebook", str(book_path), "--quiet"]) == 0
    report = validate_unit_set(unit_dir)
    assert report.num_quantized == report.num_utterances == len(truth)
    meta = read_meta(unit_dir)
    assert meta.vocab_size == K + 1 and meta.special_ids["silence"] == K and meta.kind == "syllable"
    assert meta.producer["codebook"]["hash"] == book.hash and meta.producer["codebook"]["metric"] == "cosine"
    assert meta.producer["model"] == "test"  # the segmenter's producer info is kept
    mapping: dict[int, int] = {}
    for rec in read_units(unit_dir):
        assert rec.units is not None and all(0 <= u < K for u in rec.units)
        assert consistent(rec.units, truth[rec.id], mapping)  # clusters = the true directions
    assert len(set(mapping.values())) == K
    assert snapshot(unit_dir / "embeddings") == emb_before
    assert not [p for p in unit_dir.iterdir() if p.name.startswith(".")]

    # rerun: up to date, nothing rewritten
    before = snapshot(unit_dir)
    capsys.readouterr()
    assert main(["quantize", "--units", str(unit_dir), "--codebook", str(book_path)]) == 0
    assert "already quantized" in capsys.readouterr().err
    assert snapshot(unit_dir) == before
    assert main(["cluster", "--units", str(unit_dir), "--k", str(K), "--out", str(book_path), "--metric", "cosine",
                 "--quiet", "--seed", "0"]) == 0
    assert "up to date" in capsys.readouterr().err


def test_quantize_out_of_place(tmp_path: Path) -> None:
    unit_dir, truth = make_unit_set(tmp_path)
    src_before = snapshot(unit_dir)
    from speechunits.quantize.kmeans import kmeans

    res = kmeans(sample_embeddings(unit_dir, progress=False).vectors, K, metric="euclidean", seed=0, progress=False)
    book = save_codebook(tmp_path / "km.npy", res.centroids, metric="euclidean", seed=0)
    out = tmp_path / "sub" / "quantized"
    report = quantize_unit_set(unit_dir, tmp_path / "km.npy", out, progress=False)
    assert report.num_quantized == len(truth) and report.vocab_size == K + 1 and report.has_embeddings
    assert snapshot(unit_dir) == src_before
    src_meta, out_meta = read_meta(unit_dir), read_meta(out)
    assert out_meta.producer["codebook"]["hash"] == book.hash
    for a, b in zip(read_units(unit_dir), read_units(out)):
        assert (a.id, a.starts, a.ends, a.text) == (b.id, b.starts, b.ends, b.text)
        assert src_meta.resolve_audio(a).resolve() == out_meta.resolve_audio(b).resolve()
        assert np.array_equal(read_embeddings(unit_dir, a.id), read_embeddings(out, b.id))
        assert b.units == Assigner(book)(read_embeddings(unit_dir, a.id)).tolist()


@pytest.mark.parametrize("fail_at", [1, 4])
def test_in_place_quantize_is_kill_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    unit_dir, _ = make_unit_set(tmp_path)
    save_codebook(tmp_path / "km.npy", _dirs(), metric="cosine")
    before = snapshot(unit_dir)
    names_before = sorted(p.name for p in unit_dir.rglob("*"))
    calls = {"n": 0}
    real_call = Assigner.__call__

    def flaky(self, features):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt("simulated kill")
        return real_call(self, features)

    monkeypatch.setattr(Assigner, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        quantize_unit_set(unit_dir, tmp_path / "km.npy", progress=False)
    assert snapshot(unit_dir) == before
    assert sorted(p.name for p in unit_dir.rglob("*")) == names_before  # no temp files left
    validate_unit_set(unit_dir)
    monkeypatch.setattr(Assigner, "__call__", real_call)
    assert validate_unit_set(quantize_unit_set(unit_dir, tmp_path / "km.npy", progress=False).unit_dir).vocab_size == K + 1


def test_in_place_failure_while_writing_meta_keeps_old_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit_dir, _ = make_unit_set(tmp_path)
    save_codebook(tmp_path / "km.npy", _dirs(), metric="cosine")
    before = snapshot(unit_dir)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(apply_mod, "write_meta", broken)
    with pytest.raises(OSError, match="disk full"):
        quantize_unit_set(unit_dir, tmp_path / "km.npy", progress=False)
    assert snapshot(unit_dir) == before


def test_quantize_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit_dir, _ = make_unit_set(tmp_path, n_utts=2)
    save_codebook(tmp_path / "wrong_dim.npy", np.eye(3, dtype=np.float32), metric="cosine")
    with pytest.raises(ConfigError, match="codebook dim 3 != unit set embedding_dim 8"):
        quantize_unit_set(unit_dir, tmp_path / "wrong_dim.npy", progress=False)
    n_tokens = read_meta(unit_dir).num_tokens
    rc = main(["cluster", "--units", str(unit_dir), "--k", str(n_tokens + 1), "--out", str(tmp_path / "k.pt"),
               "--quiet"])
    assert rc == 2 and "larger than the number of vectors" in capsys.readouterr().err
    assert not (tmp_path / "k.pt").exists()
    bare = tmp_path / "bare"
    with UnitSetWriter(bare, kind="syllable", sample_rate=16000, hop=320) as w:
        w.add(id="a", audio="a.wav", num_samples=16000, sample_rate=16000, starts=[0], ends=[5])
    with pytest.raises(UnitFormatError, match="no embeddings"):
        quantize_unit_set(bare, tmp_path / "wrong_dim.npy", progress=False)


# ------------------------------------------------------------------ frame units
def test_frame_units_dedup_and_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dirs = _dirs()
    save_codebook(tmp_path / "km.npy", dirs, metric="cosine")
    items, frame_ids = [], {}
    for i in range(4):
        lengths = rng.integers(1, 6, size=12)
        labels = rng.integers(0, K, size=12)
        seq = np.repeat(labels, lengths)
        num_samples = int(len(seq) * 320 - rng.integers(0, 300))  # features cover the audio (ceil)
        feats = (dirs[seq] + 0.05 * rng.normal(size=(len(seq), DIM))).astype(np.float32)
        items.append(FrameItem(id=f"u{i}", audio=f"u{i}.wav", num_samples=num_samples, sample_rate=16000,
                               features=feats, speaker="s"))
        frame_ids[f"u{i}"] = seq
    out = tmp_path / "frames"
    report = write_frame_units(out, items, tmp_path / "km.npy", producer={"features": "test"}, progress=False)
    meta = read_meta(out)
    assert meta.kind == "frame" and meta.frame_rate == "16000/320" and meta.vocab_size == K + 1
    assert meta.producer["features"] == "test" and "codebook" in meta.producer
    assert report.num_quantized == 4
    for rec in read_units(out):
        units = np.asarray(rec.units)
        assert (units[1:] != units[:-1]).all()  # consecutive repeats merged
        assert rec.starts[0] == 0 and rec.starts[1:] == rec.ends[:-1]  # runs tile the utterance
        frames = runs_to_frames(rec.units, rec.starts, rec.ends)
        assert np.array_equal(frames, frame_ids[rec.id])  # codebook = true directions, ids = labels


def test_frame_units_reject_features_longer_than_audio(tmp_path: Path) -> None:
    save_codebook(tmp_path / "km.npy", _dirs(), metric="cosine")
    item = FrameItem(id="x", audio="x.wav", num_samples=3200, sample_rate=16000,
                     features=np.ones((20, DIM), dtype=np.float32))  # 10 frames of audio
    with pytest.raises(UnitFormatError, match="at most 11 frames"):
        write_frame_units(tmp_path / "f", [item], tmp_path / "km.npy", progress=False)
    assert not (tmp_path / "f" / "units.jsonl").exists()


def test_cli_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    for verb, flag in (("cluster", "--max-samples"), ("quantize", "--codebook")):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert flag in capsys.readouterr().out


def test_codebook_sidecar_json_contents(tmp_path: Path) -> None:
    unit_dir, _ = make_unit_set(tmp_path, n_utts=3)
    assert main(["cluster", "--units", str(unit_dir), "--k", "3", "--out", str(tmp_path / "c.npy"), "--metric",
                 "euclidean", "--max-samples", "10", "--batch-size", "4", "--iters", "20", "--quiet"]) == 0
    side = json.loads((tmp_path / "c.npy.json").read_text())
    assert side["k"] == 3 and side["dim"] == DIM and side["metric"] == "euclidean" and side["num_vectors"] == 10
    assert side["settings"]["batch_size"] == 4 and side["inertia"] >= 0


def _book(tmp_path: Path) -> Path:
    save_codebook(tmp_path / "km.npy", _dirs(), metric="cosine")
    return tmp_path / "km.npy"


def test_quantized_syllables_with_gaps_export_with_silence(tmp_path: Path) -> None:
    """Tokens with pauses between them (the test set has a 1-frame gap after every token) get the
    silence id ``k`` in the gaps when laid out per frame (export --format resynth)."""
    unit_dir, truth = make_unit_set(tmp_path)
    out = tmp_path / "q"
    quantize_unit_set(unit_dir, _book(tmp_path), out, progress=False)
    assert main(["export", "--units", str(out), "--format", "resynth", "--out", str(tmp_path / "resynth.txt")]) == 0
    lines = (tmp_path / "resynth.txt").read_text().splitlines()
    assert len(lines) == len(truth)
    first = next(read_units(out))
    frames = [int(u) for u in ast.literal_eval(lines[0])["hubert"].split()]
    assert len(frames) == first.ends[-1]
    assert frames[4] == K and frames[9] == K  # the gap frames [4, 5) and [9, 10)
    assert frames[0] == first.units[0] and frames[5] == first.units[1]
    assert K not in first.units


def test_quantize_redoes_a_set_quantized_before_the_silence_id(tmp_path: Path) -> None:
    from speechunits.quantize.quantize_cli import already_done

    unit_dir, _ = make_unit_set(tmp_path)
    book = load_codebook(_book(tmp_path))
    quantize_unit_set(unit_dir, book, progress=False)
    assert already_done(unit_dir, book.hash, book.k)
    old = read_meta(unit_dir)
    old.vocab_size, old.special_ids = K, {**old.special_ids, "silence": None}
    write_meta(unit_dir, old)
    assert not already_done(unit_dir, book.hash, book.k)


def test_clustering_twice_gives_the_same_codebook_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chaos harness (issue 17): a ``.pt`` codebook rewritten on resume equals the uninterrupted
    run's byte for byte. ``torch.save`` to the temporary's path named the archive's records after
    that random name, and the pickled metadata held the wall-clock seconds (now only in the
    JSON sidecar), so every run's file differed."""

    unit_dir, _ = make_unit_set(tmp_path)
    for step, name in ((1.0, "a"), (2.0, "b")):  # the second run is slower
        clock = itertools.count(0.0, step)
        monkeypatch.setattr(cluster_cli, "time", types.SimpleNamespace(time=lambda: next(clock)))
        assert main(["cluster", "--units", str(unit_dir), "--k", str(K), "--out", str(tmp_path / name / "km.pt"),
                     "--quiet", "--seed", "0"]) == 0
    assert (tmp_path / "a" / "km.pt").read_bytes() == (tmp_path / "b" / "km.pt").read_bytes()
    side = json.loads((tmp_path / "a" / "km.pt.json").read_text())
    assert side["seconds"] == {"sampling": 1.0, "kmeans": 1.0}  # the timings stay in the sidecar


def _quantize_out_command(tmp_path: Path) -> tuple[list[str], Path, dict[str, str]]:
    """``quantize --out`` of a 6-utterance unit set with a saved codebook, as a subprocess command
    (its output directory, and an environment without kill-point variables)."""
    unit_dir, _ = make_unit_set(tmp_path)
    book = tmp_path / "km.npy"
    save_codebook(book, _dirs(), metric="cosine")
    out = tmp_path / "km_units"
    cmd = [sys.executable, "-m", "speechunits", "quantize", "--units", str(unit_dir), "--codebook", str(book),
           "--out", str(out), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("SPEECHUNITS_KILL_TRACE", "SPEECHUNITS_KILL_AT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return cmd, out, env


def test_killed_out_of_place_quantize_leaves_no_spool_behind(tmp_path: Path) -> None:
    """Chaos harness (issue 17): a SIGKILLed ``quantize --out`` leaves the unit-set writer's hidden
    spool (``.units.jsonl.*.spool.tmp``) and embedding spool (``embeddings/.shard.0.npy.*.raw.tmp``);
    the rerun removes them (their writer is dead) instead of leaving them beside the finished set."""
    cmd, out, env = _quantize_out_command(tmp_path)
    killed = subprocess.run(cmd, env={**env, "SPEECHUNITS_KILL_AT": "unit-line:spool#3"}, capture_output=True,
                            timeout=120, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    hidden = sorted(p.name for p in out.rglob(".*"))
    assert any(n.endswith(".spool.tmp") for n in hidden) and any(n.endswith(".raw.tmp") for n in hidden), hidden
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(out.rglob(".*")), sorted(p.name for p in out.rglob(".*"))
    assert validate_unit_set(out).num_quantized == 6


@pytest.mark.parametrize("kill_at", ["atomic-write:units.jsonl#1", "atomic-renamed:units.jsonl#1"])
def test_quantize_killed_at_the_final_rename_leaves_no_spool(tmp_path: Path, kill_at: str) -> None:
    """Chaos harness (issue 17): killed while ``units.jsonl`` is renamed into place, the writer had
    not yet removed its spool, and the rerun (the set is complete: "already quantized") never
    did; the spool is now removed before the rename."""
    cmd, out, env = _quantize_out_command(tmp_path)
    killed = subprocess.run(cmd, env={**env, "SPEECHUNITS_KILL_AT": kill_at}, capture_output=True, timeout=120,
                            start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(out.rglob(".*")), sorted(p.name for p in out.rglob(".*"))
    assert validate_unit_set(out).num_quantized == 6


def test_in_place_quantize_writes_no_temporary_of_a_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chaos harness (issue 17): the in-place meta.json went to its temporary through a second
    atomic write (``..meta.json.*.tmp.json.*.tmp.json``), whose temporary no rerun recognises
    (a kill there left it for good). Every atomic write now targets a real name."""
    from speechunits import io_utils

    unit_dir, _ = make_unit_set(tmp_path)
    book = tmp_path / "km.npy"
    save_codebook(book, _dirs(), metric="cosine")
    written: list[str] = []
    monkeypatch.setattr(io_utils, "kill_point", lambda name, detail="", torn=None: written.append(detail))
    quantize_unit_set(unit_dir, book, progress=False)
    assert {"units.jsonl", "meta.json"} <= set(written)
    assert not [n for n in written if n.startswith(".")], written
    assert read_meta(unit_dir).vocab_size == K + 1
    assert not [p for p in unit_dir.iterdir() if p.name.startswith(".")]
