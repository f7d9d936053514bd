"""``speechunits tokenize``: output == Segmenter, resume after SIGKILL, --nj 2 == --nj 1, bad audio, --segments."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.sylber.segment import segment_means
from speechunits.sylber.segmenter import Segmenter
from speechunits.tokenize import OverlapWorker
from speechunits.tokenize import tokenize_cli as tok_cli
from speechunits.units import iter_embeddings, read_meta, read_units, validate_unit_set
from synthetic_inputs import kill_mid_way, speechlike, tokenize_corpus

SR = 16000
REPO = Path(__file__).resolve().parents[1]
NORM, MERGE = 0.0, 0.9  # norm threshold replaced by a percentile of the model's norms (see `corpus`)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Checkpoint + 8 short wavs (0.6-2 s, one at 8 kHz) + a JSONL manifest + thresholds."""
    return tokenize_corpus(tmp_path_factory.mktemp("tok"), 8, MERGE, low_rate=3)


def _args(corpus: dict, out: Path, **kw: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tok_cli.add_arguments(parser)
    argv = ["--model", str(corpus["ckpt"]), "--data", str(kw.pop("data", corpus["manifest"])), "--out", str(out),
            "--device", "cpu", "--norm-threshold", repr(corpus["norm"]), "--merge-threshold", repr(MERGE),
            "--batch-seconds", str(kw.pop("batch_seconds", 5.0)), "--num-workers", "2", "--threads", "1"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def _cmd(corpus: dict, out: Path, **kw: object) -> list[str]:
    ns = _args(corpus, out, **kw)
    argv = [sys.executable, "-m", "speechunits.tokenize.tokenize_cli", "--model", str(ns.model), "--data", str(ns.data),
            "--out", str(ns.out), "--device", "cpu", "--norm-threshold", repr(ns.norm_threshold),
            "--merge-threshold", repr(ns.merge_threshold), "--batch-seconds", repr(ns.batch_seconds),
            "--threads", "1", "--nj", str(ns.nj)]
    return argv + (["--job", str(ns.job)] if ns.job is not None else [])


def _lines(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "units.jsonl").read_text().splitlines()]


def _resolved_lines(out: Path) -> list[dict]:
    """The lines with ``audio`` resolved through meta.json (unit sets of corpora with different audio roots)."""
    meta = read_meta(out)
    return [{**line, "audio": str(meta.resolve_audio(line["audio"]))} for line in _lines(out)]


@pytest.fixture(scope="module")
def single(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus tokenized in-process with --nj 1."""
    out = tmp_path_factory.mktemp("single") / "units"
    assert tok_cli.run(_args(corpus, out)) == 0
    return out


def test_output_equals_segmenter(corpus: dict, single: Path) -> None:
    report = validate_unit_set(single, check_audio=True)
    assert report.num_utterances == len(corpus["utts"])
    meta = json.loads((single / "meta.json").read_text())
    prod = meta["producer"]
    assert prod["segmenter"] == "sylber-greedy"
    assert prod["norm_threshold"] == corpus["norm"] and prod["merge_threshold"] == MERGE
    assert len(prod["model"]["sha256"]) == 64 and prod["model"]["config"]["num_layers"] == 2
    assert meta["embedding_dim"] == 64
    assert (single / "provenance.json").is_file() and (single / "bad_utts.txt").read_text() == ""
    seg = Segmenter(corpus["model"], device="cpu", norm_threshold=corpus["norm"], merge_threshold=MERGE)
    records = {r.id: r for r in read_units(single)}
    embs = dict(iter_embeddings(single))
    total = 0
    for utt in corpus["utts"]:
        rec, ref = records[utt.id], seg(utt.audio)
        got = np.stack([rec.starts, rec.ends], axis=1).reshape(-1, 2)
        np.testing.assert_array_equal(got, ref.segments_frames, err_msg=utt.id)
        info = sf.info(utt.audio)  # the record holds the file's own length and rate (u03 is at 8 kHz)
        assert (rec.num_samples, rec.sample_rate) == (info.frames, info.samplerate)
        assert rec.num_samples * SR == ref.num_samples * rec.sample_rate  # the model saw it resampled
        assert rec.text == utt.text and rec.speaker == utt.speaker
        emb = np.asarray(embs[utt.id])
        assert emb.dtype == np.float16 and emb.shape == ref.embeddings.shape
        np.testing.assert_allclose(emb.astype(np.float32), segment_means(ref.hidden_states, ref.segments_frames),
                                   rtol=2e-3, atol=2e-3)
        total += len(got)
    assert total > 3 * len(corpus["utts"])  # the test data really gives several segments per utterance


def test_complete_output_is_skipped_and_new_config_redoes(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "u"
    assert tok_cli.run(_args(corpus, out, no_embeddings=True)) == 0
    assert not (out / "embeddings").exists() and json.loads((out / "meta.json").read_text())["embedding_dim"] is None
    stamp = (out / "provenance.json").stat().st_mtime_ns
    time.sleep(0.01)
    assert tok_cli.run(_args(corpus, out, no_embeddings=True)) == 0
    assert (out / "provenance.json").stat().st_mtime_ns == stamp  # skipped
    before = _lines(out)
    higher = corpus["norm"] * 1.3
    assert tok_cli.run(_args({**corpus, "norm": higher}, out, no_embeddings=True)) == 0
    assert (out / "provenance.json").stat().st_mtime_ns != stamp
    after = _lines(out)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    frames = lambda recs: sum(e - s for r in recs for s, e in zip(r["starts"], r["ends"]))  # noqa: E731
    assert frames(after) < frames(before)  # fewer speech frames
    assert json.loads((out / "meta.json").read_text())["producer"]["norm_threshold"] == higher


def test_partial_shard_of_other_config_is_discarded(corpus: dict, single: Path, tmp_path: Path) -> None:
    """A partial job left by a different config is removed, not mixed into the new output."""
    out = tmp_path / "u"
    kill_mid_way(_cmd({**corpus, "norm": corpus["norm"] * 1.3}, out), out / "units.0.partial.jsonl", cwd=REPO)
    assert tok_cli.run(_args(corpus, out)) == 0
    assert _lines(out) == _lines(single)


def test_kill_and_rerun(corpus: dict, single: Path, tmp_path: Path) -> None:
    """SIGKILL a job mid-way; the rerun skips finished ids and loses nothing."""
    out = tmp_path / "u"
    # one batch (<= 2 utterances) written, then a long sleep
    partial = kill_mid_way(_cmd(corpus, out, nj=2, job=1, batch_seconds=1.5), out / "units.1.partial.jsonl", cwd=REPO)
    assert 1 <= len(partial) < 4 and not (out / "units.1.jsonl").exists()
    # rerun job 1 in-process: the finished ids are not redone
    from speechunits.tokenize.job import run_job

    report = run_job(tok_cli.settings_from_args(_args(corpus, out, nj=2, batch_seconds=1.5)), 1, progress=False)
    assert report.already_done == len(partial) and report.utterances == 4 - len(partial)
    run_job(tok_cli.settings_from_args(_args(corpus, out, nj=2, batch_seconds=1.5)), 0, progress=False)
    # every shard is finished: the whole command only merges (and launches nothing)
    assert tok_cli.run(_args(corpus, out, nj=2, batch_seconds=1.5)) == 0
    assert not (out / "log").exists()
    assert validate_unit_set(out).num_utterances == len(corpus["utts"])
    ids = [r["id"] for r in _lines(out)]
    assert ids == sorted({u.id for u in corpus["utts"]})  # each once, none lost
    assert _lines(out) == _lines(single)
    assert not list(out.glob("*.partial.*")) and not list(out.glob("tokenize.*.json"))


@pytest.mark.slow
def test_local_jobs_equal_single_job(corpus: dict, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "u"
    assert tok_cli.run(_args(corpus, out, nj=2)) == 0
    assert (out / "log" / "tokenize.0.log").is_file() and (out / "log" / "tokenize.1.log").is_file()
    assert (out / "units.jsonl").read_text() == (single / "units.jsonl").read_text()
    a, b = dict(iter_embeddings(out)), dict(iter_embeddings(single))
    for utt in corpus["utts"]:  # other batch companions: float rounding differs by up to 1 float16 ulp
        np.testing.assert_allclose(np.asarray(a[utt.id], np.float32), np.asarray(b[utt.id], np.float32),
                                   rtol=2e-3, atol=2e-3)


def test_failed_local_job_names_its_log(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "u"
    out.mkdir()
    # a partial shard of job 1 from "another producer" without a job record: the writer refuses it
    (out / "units.1.partial.jsonl").write_text("")
    (out / "meta.1.partial.json").write_text(json.dumps({
        "format": "speechunits.units/1", "kind": "frame", "sample_rate": SR, "hop": 320, "job": 1, "nj": 2}))
    from speechunits.tokenize.job import run_job

    run_job(tok_cli.settings_from_args(_args(corpus, out, nj=2)), 0, progress=False)  # job 0 is done
    assert tok_cli.run(_args(corpus, out, nj=2)) == 1  # launches job 1 only, which fails
    err = capsys.readouterr().err
    assert "running 1 local job(s)" in err
    assert "job 1 failed" in err and str(out / "log" / "tokenize.1.log") in err
    assert "job 0 failed" not in err


def test_bad_audio_is_reported_and_skipped(corpus: dict, single: Path, tmp_path: Path) -> None:
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    empty = bad_dir / "empty.wav"
    empty.write_bytes(b"")
    nan = bad_dir / "nan.wav"
    wav = speechlike(1.0, 9)
    wav[100:200] = np.nan
    sf.write(nan, wav, SR, subtype="FLOAT")
    trunc = bad_dir / "trunc.wav"
    sf.write(trunc, speechlike(1.0, 10), SR)
    trunc.write_bytes(trunc.read_bytes()[:4000])  # header still claims 1 s
    utts = list(corpus["utts"]) + [Utterance(id="zbad-empty", audio=str(empty)), Utterance(id="zbad-nan", audio=str(nan)),
                                   Utterance(id="zbad-trunc", audio=str(trunc)),
                                   Utterance(id="zbad-missing", audio=str(bad_dir / "missing.wav"))]
    manifest = tmp_path / "data.jsonl"
    write_jsonl_manifest(utts, manifest)
    out = tmp_path / "u"
    from speechunits.tokenize.job import run_job

    reports = [run_job(tok_cli.settings_from_args(_args(corpus, out, data=manifest, nj=2)), j, progress=False)
               for j in range(2)]  # the two jobs in-process; the command then merges them
    assert sum(r.bad for r in reports) == 4 and all(r.bad for r in reports)
    assert tok_cli.run(_args(corpus, out, data=manifest, nj=2)) == 0
    bad = dict(ln.split("\t", 1) for ln in (out / "bad_utts.txt").read_text().splitlines())
    assert sorted(bad) == ["zbad-empty", "zbad-missing", "zbad-nan", "zbad-trunc"]
    assert "NaN" in bad["zbad-nan"] and "empty.wav" in bad["zbad-empty"] and "trunc.wav" in bad["zbad-trunc"]
    # the same lines; the audio root is another (it holds the bad files too), so compare resolved paths
    assert _resolved_lines(out) == _resolved_lines(single)


def test_long_utterance_runs_alone(corpus: dict, single: Path, tmp_path: Path) -> None:
    """An utterance longer than --batch-seconds is tokenized alone, not dropped."""
    out = tmp_path / "u"
    assert tok_cli.run(_args(corpus, out, batch_seconds=1.0)) == 0  # utterances up to 2 s
    assert (out / "bad_utts.txt").read_text() == ""
    assert _lines(out) == _lines(single)


def test_device_segmentation_and_frame_budget(corpus: dict, single: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """--segment-on device (kernels replaced by a CPU stand-in: only segments and float16 means come back)
    and a --max-batch-frames budget give the same unit set as the host path."""
    import device_segmentation_standin as standin

    module = standin.install(monkeypatch)
    out = tmp_path / "dev"
    assert tok_cli.run(_args(corpus, out, segment_on="device", max_batch_frames=150, prefetch=1)) == 0
    assert module.calls["greedy"] >= 3 and module.calls["means"] == module.calls["greedy"]
    assert _lines(out) == _lines(single) and (out / "bad_utts.txt").read_text() == ""
    a, b = dict(iter_embeddings(out)), dict(iter_embeddings(single))
    for utt in corpus["utts"]:
        np.testing.assert_allclose(np.asarray(a[utt.id], np.float32), np.asarray(b[utt.id], np.float32),
                                   rtol=2e-3, atol=2e-3)


def test_overlap_worker_order_bound_and_errors() -> None:
    import threading

    running = []
    gate = threading.Event()

    def task(x: int) -> int:
        running.append(x)
        gate.wait(5)
        return x * 10

    with OverlapWorker(max_pending=2) as w:
        assert list(w.submit(task, 1)) == [] and list(w.submit(task, 2)) == []
        assert w.num_pending == 2
        gate.set()
        assert list(w.submit(task, 3)) == [10]  # the bound makes the oldest result come back
        assert list(w.drain()) == [20, 30]
    with OverlapWorker(max_pending=1) as w:
        list(w.submit(lambda: 1 / 0))
        with pytest.raises(ZeroDivisionError):
            list(w.drain())


def test_dispatcher_and_option_errors(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    """Through `speechunits tokenize` (registry entry added here until the lead adds it)."""
    import speechunits.cli as top

    monkeypatch.setitem(top.COMMANDS, "tokenize", ("speechunits.tokenize.tokenize_cli", "tokenize a corpus"))
    base = ["tokenize", "--model", str(corpus["ckpt"]), "--data", str(corpus["manifest"]), "--out", str(tmp_path / "u")]
    assert top.main(base + ["--nj", "2", "--job", "2"]) == 2
    assert "--job" in capsys.readouterr().err
    assert top.main(base + ["--batch-seconds", "0"]) == 2
    assert "--batch-seconds" in capsys.readouterr().err
    assert top.main(base + ["--max-batch-frames", "0", "--prefetch", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch-frames must be >= 1" in err and "--prefetch must be >= 1" in err
    assert top.main(base + ["--device", "cpu", "--segment-on", "device"]) == 2  # no device kernels on this machine
    assert "--segment-on device" in capsys.readouterr().err
    assert top.main(["tokenize", "--model", str(tmp_path / "nope.pt"), "--data", str(corpus["manifest"]),
                     "--out", str(tmp_path / "u")]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


# ------------------------------------------------------------------ --segments: given spans
def _segment_set(corpus: dict, out: Path, spans: dict[str, list[list[int]]], *, hop: int = 320,
                 extra_samples: dict[str, int] | None = None) -> Path:
    """A hand-written unit set (kind ``syllable``) holding ``spans`` of some corpus utterances."""
    from speechunits.units import UnitSetWriter

    extra_samples = extra_samples or {}
    with UnitSetWriter(out, kind="syllable", sample_rate=SR, hop=hop, producer={"segmenter": "handmade"}) as w:
        for utt in sorted(corpus["utts"], key=lambda u: u.id):
            if utt.id in spans:
                n = sf.info(utt.audio).frames * (SR // sf.info(utt.audio).samplerate) + extra_samples.get(utt.id, 0)
                seg = np.asarray(spans[utt.id], np.int64).reshape(-1, 2)
                w.add(id=utt.id, audio=utt.audio, num_samples=n, sample_rate=SR, starts=seg[:, 0], ends=seg[:, 1])
    return out


def _given_spans(corpus: dict) -> tuple[dict[str, list[list[int]]], dict[str, np.ndarray], dict[str, int]]:
    """Spans for all utterances but the first (missing) and second (overhanging by 5 frames), the model's
    features per utterance, and the samples to add to the records that overhang."""
    seg = Segmenter(corpus["model"], device="cpu", norm_threshold=corpus["norm"], merge_threshold=MERGE)
    utts = sorted(corpus["utts"], key=lambda u: u.id)
    spans, states, extra = {}, {}, {}
    for k, utt in enumerate(utts[1:], start=1):
        h = seg(utt.audio).hidden_states
        t = len(h)
        states[utt.id] = h
        if k == 1:
            spans[utt.id], extra[utt.id] = [[0, 3], [4, t + 5]], 320 * 6  # spans from other (longer) audio
        elif k == 2:
            spans[utt.id] = []  # no segments at all: written with none
        else:  # varied lengths with gaps; the last span overhangs the model's frames by one (clipped)
            cuts = [1, 4, 5 + k % 3, 12, t - 6, t - 2]
            spans[utt.id] = [[cuts[0], cuts[1]], [cuts[1], cuts[2]], [cuts[3], cuts[4]], [cuts[5], t + 1]]
            extra[utt.id] = 320
    return spans, states, extra


def test_given_segments_pool_the_model_features(corpus: dict, tmp_path: Path) -> None:
    """--segments: the spans are the given ones (clipped by <= 1 frame), embeddings the model's means over
    them, producer "given" with the set's own producer; a missing or far-overhanging utterance is a bad item."""
    spans, states, extra = _given_spans(corpus)
    segs = _segment_set(corpus, tmp_path / "given", spans, extra_samples=extra)
    out = tmp_path / "u"
    assert tok_cli.run(_args(corpus, out, segments=segs)) == 0
    assert validate_unit_set(out).num_utterances == len(corpus["utts"]) - 2
    meta = json.loads((out / "meta.json").read_text())
    prod = meta["producer"]
    assert prod["segmenter"] == "given" and meta["kind"] == "syllable"
    assert prod["segments"] == {"path": str(segs.resolve()), "producer": {"segmenter": "handmade"}}
    assert "norm_threshold" not in prod and len(prod["model"]["sha256"]) == 64
    utts = sorted(corpus["utts"], key=lambda u: u.id)
    bad = dict(ln.split("\t", 1) for ln in (out / "bad_utts.txt").read_text().splitlines())
    assert sorted(bad) == [utts[0].id, utts[1].id]
    assert "not in the segment set" in bad[utts[0].id] and str(segs.resolve()) in bad[utts[0].id]
    assert "do not fit" in bad[utts[1].id]
    records = {r.id: r for r in read_units(out)}
    embs = dict(iter_embeddings(out))
    for utt in utts[2:]:
        t = len(states[utt.id])
        want = np.asarray(spans[utt.id], np.int64).reshape(-1, 2)
        want[:, 1] = np.minimum(want[:, 1], t)
        got = np.stack([records[utt.id].starts, records[utt.id].ends], axis=1).reshape(-1, 2)
        np.testing.assert_array_equal(got, want, err_msg=utt.id)
        emb = np.asarray(embs[utt.id], np.float32)
        assert emb.shape == (len(want), 64)
        if len(want):
            assert want[-1, 1] == t  # the overhanging span was clipped, not dropped
            np.testing.assert_allclose(emb, segment_means(states[utt.id], want), rtol=2e-3, atol=2e-3)
    # same set: skipped; a changed set (other hash): redone
    stamp = (out / "provenance.json").stat().st_mtime_ns
    assert tok_cli.run(_args(corpus, out, segments=segs)) == 0
    assert (out / "provenance.json").stat().st_mtime_ns == stamp
    spans[utts[0].id] = [[2, 9]]
    _segment_set(corpus, tmp_path / "given2", spans, extra_samples=extra)
    segs.rename(tmp_path / "old")
    (tmp_path / "given2").rename(segs)
    assert tok_cli.run(_args(corpus, out, segments=segs)) == 0
    assert (out / "provenance.json").stat().st_mtime_ns != stamp
    assert [r.starts for r in read_units(out) if r.id == utts[0].id] == [[2]]
    assert utts[0].id not in (out / "bad_utts.txt").read_text()


def test_given_segments_errors(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    """Another frame rate, a missing directory, a directory that is no unit set: exit 2 naming it, nothing written."""
    import speechunits.cli as top

    monkeypatch.setitem(top.COMMANDS, "tokenize", ("speechunits.tokenize.tokenize_cli", "tokenize a corpus"))
    utt = sorted(corpus["utts"], key=lambda u: u.id)[0]
    fast = _segment_set(corpus, tmp_path / "hz100", {utt.id: [[0, 10]]}, hop=160)
    out = tmp_path / "u"
    base = ["tokenize", "--model", str(corpus["ckpt"]), "--data", str(corpus["manifest"]), "--out", str(out),
            "--device", "cpu", "--threads", "1", "--segments"]
    assert top.main(base + [str(fast)]) == 2
    err = capsys.readouterr().err
    assert str(fast) in err and "100 Hz" in err and "50 Hz" in err
    assert top.main(base + [str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert top.main(base + [str(tmp_path / "empty")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err
    assert not out.exists()


def test_frame_budget_alone_lifts_the_seconds_cap(corpus: dict, tmp_path: Path) -> None:
    """--max-batch-frames without --batch-seconds: the frame budget alone; with both, the smaller wins."""
    parser = argparse.ArgumentParser()
    tok_cli.add_arguments(parser)
    base = ["--model", str(corpus["ckpt"]), "--data", str(corpus["manifest"]), "--out", str(tmp_path / "u")]
    assert tok_cli.settings_from_args(parser.parse_args(base)).batch_seconds == 60.0
    alone = tok_cli.settings_from_args(parser.parse_args(base + ["--max-batch-frames", "48000"]))
    assert alone.batch_seconds == float("inf") and alone.max_batch_frames == 48000
    both = parser.parse_args(base + ["--max-batch-frames", "48000", "--batch-seconds", "30"])
    assert tok_cli.settings_from_args(both).batch_seconds == 30.0
    from speechunits.encoders.batch import batch_budget_samples

    assert batch_budget_samples(SR, 320, alone.batch_seconds, 48000) == 48000 * 320
    assert batch_budget_samples(SR, 320, 30.0, 48000) == 30 * SR
    with pytest.raises(ValueError, match="infinite only with a max_batch_frames"):
        batch_budget_samples(SR, 320, float("inf"), None)


def test_device_segmentation_with_the_real_kernels_under_the_triton_interpreter(corpus: dict, single: Path,
                                                                                tmp_path: Path) -> None:
    """`tokenize --segment-on device` with the real Triton kernels of speechunits.sylber.segment_device,
    run by Triton's CPU interpreter in a subprocess: the same segments as the host path, embeddings
    within float16 rounding. (On a GPU the same kernels are compiled instead of interpreted.)"""
    import os
    import subprocess

    out = tmp_path / "interp"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(_cmd(corpus, out) + ["--segment-on", "device"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _lines(out) == _lines(single) and (out / "bad_utts.txt").read_text() == ""
    a, b = dict(iter_embeddings(out)), dict(iter_embeddings(single))
    for utt in corpus["utts"]:
        np.testing.assert_allclose(np.asarray(a[utt.id], np.float32), np.asarray(b[utt.id], np.float32),
                                   rtol=2e-3, atol=2e-3)
