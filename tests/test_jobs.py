"""speechunits.jobs, the sharded-job runner, with its unit-set output (speechunits.units.shard_output),
and the three commands on it (tokenize, frame-units, bootstrap-segments): every input utterance ends in exactly one of units.jsonl / bad_utts.txt
(a cut FLAC whose header claims 576460752303423.5 s included), the summary line counts the
files, shards resume after a kill, a broken accounting is an InternalError naming the ids,
and a moved corpus is one edited line of meta.json."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.encoders.checkpoints import save_encoder
from speechunits.errors import InternalError
from speechunits.jobs import JobRunner, add_job_arguments, command_line, shard_of
from speechunits.launchers import LAUNCHERS
from speechunits.quantize import frame_units_cli as fu
from speechunits.sylber import bootstrap_cli as bs
from speechunits.tokenize import tokenize_cli as tok
from speechunits.units import read_meta, read_units, validate_unit_set
from speechunits.units.shard_output import UnitShardWriter, unit_set_runner
from synthetic_inputs import corrupt_flac, kill_mid_way, randomised_tiny_model, run_killed_at, speechlike

SR = 16000
REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"wrote (\S+): (\d+) utterance\(s\) in units\.jsonl, (\d+) in bad_utts\.txt")
BAD_IDS = {"x-cut-flac", "x-empty", "x-nan", "x-claims-an-hour"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model, 6 good utterances in two speaker dirs, and the bad ones: the cut FLAC, an empty
    file, a NaN file, and a manifest line claiming an hour for a short file (planned as long,
    then its solo run fails to decode: the path that lost the FLAC)."""
    root = tmp_path_factory.mktemp("jobs")
    save_encoder(root / "model.pt", randomised_tiny_model())
    audio = root / "corpus" / "audio"
    utts = []
    for i in range(6):
        path = audio / f"spk{i % 2}" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speechlike(0.6 + 0.25 * i, i), SR)
        utts.append(Utterance(f"spk{i % 2}-u{i}", str(path), speaker=f"spk{i % 2}", text=f"text {i}"))
    bad = audio / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    nan = speechlike(0.5, 9)
    nan[100] = np.nan
    sf.write(bad / "nan.wav", nan, SR, subtype="FLOAT")
    utts += [Utterance("x-cut-flac", str(corrupt_flac(bad / "cut.flac"))),
             Utterance("x-empty", str(bad / "empty.wav")), Utterance("x-nan", str(bad / "nan.wav")),
             Utterance("x-claims-an-hour", utts[0].audio, num_samples=3600 * SR, sample_rate=SR)]
    write_jsonl_manifest(utts, root / "data.jsonl")
    return {"root": root, "model": root / "model.pt", "data": root / "data.jsonl", "utts": utts, "audio": audio}


def _parse(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


COMMANDS: dict[str, tuple[Callable, Callable, Callable[[dict, Path], list[str]]]] = {
    "tokenize": (tok.add_arguments, tok.run, lambda c, out: [
        "--model", str(c["model"]), "--data", str(c["data"]), "--out", str(out), "--device", "cpu",
        "--batch-seconds", "3", "--norm-threshold", "1.0", "--num-workers", "1", "--threads", "1"]),
    "frame-units": (fu.add_arguments, fu.run, lambda c, out: [
        "--model", str(c["model"]), "--layer", "1", "--data", str(c["data"]), "--out", str(out), "--device", "cpu",
        "--k", "3", "--max-frames", "200", "--batch-seconds", "3", "--num-workers", "1", "--quiet", "--threads", "1"]),
    "bootstrap-segments": (bs.add_arguments, bs.run, lambda c, out: [
        "--data", str(c["data"]), "--out", str(out)]),
}


def _check_accounting(corpus: dict, out: Path, err: str) -> tuple[set[str], dict[str, str]]:
    """Every input id in exactly one of units.jsonl / bad_utts.txt; the summary line counts the files."""
    written = [json.loads(line)["id"] for line in (out / "units.jsonl").read_text().splitlines()]
    bad = dict(line.split("\t", 1) for line in (out / "bad_utts.txt").read_text().splitlines())
    assert len(bad) == len((out / "bad_utts.txt").read_text().splitlines())
    assert not set(written) & set(bad) and len(set(written)) == len(written)
    assert set(written) | set(bad) == {u.id for u in corpus["utts"]}
    found = SUMMARY.findall(err)
    assert found == [(str(out), str(len(written)), str(len(bad)))], err
    assert not list(out.glob("*.J.json")) and not list(out.glob("bad_utts.*.txt"))
    return set(written), bad


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_utterance_written_or_listed_bad(corpus: dict, verb: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    add_arguments, run, argv = COMMANDS[verb]
    out = tmp_path / verb
    assert run(_parse(add_arguments, argv(corpus, out))) == 0
    written, bad = _check_accounting(corpus, out, capsys.readouterr().err)
    expected_bad = BAD_IDS - ({"x-claims-an-hour"} if verb == "bootstrap-segments" else set())  # it reads the audio
    assert set(bad) == expected_bad  # bootstrap does not trust the manifest's length: it just reads the file
    assert "cut.flac" in bad["x-cut-flac"] and "header claims" in bad["x-cut-flac"]
    assert "empty.wav" in bad["x-empty"] and "nan.wav" in bad["x-nan"]
    # audio paths are relative to the declared root: the common directory of the corpus's files
    meta = read_meta(out)
    assert meta.audio_root == str(corpus["audio"])
    for rec in read_units(out):
        assert not Path(rec.audio).is_absolute() and meta.resolve_audio(rec).is_file()


def test_local_jobs_and_cluster_array_flow(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--nj 2 through the local pool (subprocesses with logs), and --job J tasks followed by a merge."""
    add_arguments, run, argv = COMMANDS["bootstrap-segments"]
    single = tmp_path / "single"
    assert run(_parse(add_arguments, argv(corpus, single))) == 0
    pooled = tmp_path / "pooled"
    assert run(_parse(add_arguments, argv(corpus, pooled) + ["--nj", "2"])) == 0
    err = capsys.readouterr().err
    assert "running 2 local job(s)" in err
    _check_accounting(corpus, pooled, err.split("running 2 local job(s)")[1])
    log = (pooled / "log" / "bootstrap-segments.1.log").read_text()
    assert log.startswith(f"{sys.executable} -m speechunits bootstrap-segments ") and "--job 1" in log
    assert (pooled / "units.jsonl").read_text() == (single / "units.jsonl").read_text()
    assert (pooled / "bad_utts.txt").read_text() == (single / "bad_utts.txt").read_text()
    array = tmp_path / "array"
    for job in (1, 0):
        assert run(_parse(add_arguments, argv(corpus, array) + ["--nj", "2", "--job", str(job)])) == 0
    assert not (array / "units.jsonl").exists() and (array / "bootstrap-segments.0.json").is_file()
    assert run(_parse(add_arguments, argv(corpus, array) + ["--nj", "2"])) == 0  # only merges
    assert not (array / "log").exists()
    assert (array / "units.jsonl").read_text() == (single / "units.jsonl").read_text()
    capsys.readouterr()
    assert run(_parse(add_arguments, argv(corpus, array) + ["--nj", "2", "--job", "0"])) == 0
    assert "complete for this config; nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["bootstrap-segments", "frame-units"])
def test_kill_and_resume(corpus: dict, verb: str, tmp_path: Path) -> None:
    """SIGKILL shard 1 mid-way; rerunning continues after its written utterances and loses none."""
    add_arguments, run, argv = COMMANDS[verb]
    reference = tmp_path / "reference"
    assert run(_parse(add_arguments, argv(corpus, reference))) == 0
    out = tmp_path / "killed"
    if verb == "frame-units":  # pass 1 first: a --job task needs the codebook
        out.mkdir()
        shutil.copy(reference / "codebook.pt", out / "codebook.pt")
        shutil.copy(reference / "codebook.pt.json", out / "codebook.pt.json")
    cmd = [sys.executable, "-m", "speechunits", verb, *argv(corpus, out), "--nj", "2", "--job", "1"]
    partial = kill_mid_way(cmd, out / "units.1.partial.jsonl", cwd=REPO)
    assert partial and not (out / "units.1.jsonl").exists()
    assert run(_parse(add_arguments, argv(corpus, out) + ["--nj", "2"])) == 0  # shard 0 runs, shard 1 resumes
    assert (out / "units.jsonl").read_text() == (reference / "units.jsonl").read_text()
    assert (out / "bad_utts.txt").read_text() == (reference / "bad_utts.txt").read_text()
    assert not list(out.glob("*.partial.*"))


@pytest.mark.parametrize("point", ["atomic-write:bad_utts.#.txt#1", "atomic-write:bad_utts.txt#1"])
def test_kill_in_a_write_or_the_merge_leaves_nothing_behind(corpus: dict, point: str, tmp_path: Path) -> None:
    """SIGKILL with a shard's bad list (or the merged one) written to its temporary but not yet
    renamed: the rerun's merge sweeps the temporary and ends with the uninterrupted output (the
    chaos harness found such temporaries left behind)."""
    add_arguments, run, argv = COMMANDS["bootstrap-segments"]
    reference = tmp_path / "reference"
    assert run(_parse(add_arguments, argv(corpus, reference) + ["--nj", "2"])) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "speechunits", "bootstrap-segments", *argv(corpus, out), "--nj", "2"]
    assert run_killed_at(cmd, point, cwd=REPO) == -9
    assert run(_parse(add_arguments, argv(corpus, out) + ["--nj", "2"])) == 0
    assert sorted(p.name for p in out.rglob("*") if "provenance" not in p.name and "log" not in p.parts) == \
        sorted(p.name for p in reference.rglob("*") if "provenance" not in p.name and "log" not in p.parts)
    assert (out / "units.jsonl").read_bytes() == (reference / "units.jsonl").read_bytes()
    assert (out / "bad_utts.txt").read_bytes() == (reference / "bad_utts.txt").read_bytes()


def test_moving_the_corpus_is_one_line_of_meta(corpus: dict, tmp_path: Path) -> None:
    """Tokenize a corpus, move it, edit the audio_root line: every record resolves to an existing file,
    and readers (validate --check-audio, stage-1 training's segment reader) still work."""
    moved_from = tmp_path / "corpus"
    shutil.copytree(corpus["audio"], moved_from / "audio")
    utts = [Utterance(u.id, u.audio.replace(str(corpus["audio"]), str(moved_from / "audio")), speaker=u.speaker,
                      text=u.text) for u in corpus["utts"][:6]]
    write_jsonl_manifest(utts, tmp_path / "data.jsonl")
    out = tmp_path / "units"
    add_arguments, run, argv = COMMANDS["tokenize"]
    assert run(_parse(add_arguments, argv({**corpus, "data": tmp_path / "data.jsonl"}, out))) == 0
    before = out.joinpath("units.jsonl").read_text()
    assert str(moved_from) not in before  # no absolute path in the lines
    moved_to = tmp_path / "elsewhere" / "new-corpus"
    moved_to.parent.mkdir()
    shutil.move(moved_from, moved_to)
    meta_text = (out / "meta.json").read_text()
    line = f'  "audio_root": "{moved_from / "audio"}",\n'
    assert meta_text.count(line) == 1
    (out / "meta.json").write_text(meta_text.replace(line, f'  "audio_root": "{moved_to / "audio"}",\n'))
    meta = read_meta(out)
    assert all(meta.resolve_audio(rec).is_file() for rec in read_units(out))
    assert all(str(meta.resolve_audio(rec)).startswith(str(moved_to)) for rec in read_units(out))
    assert validate_unit_set(out, check_audio=True).num_utterances == 6
    # quantize --out re-points the root at the moved corpus; the exporter writes existing paths
    import ast

    from speechunits.quantize import quantize_unit_set, save_codebook
    from speechunits.units import export_resynth, iter_embeddings

    rows = np.concatenate([np.asarray(e, np.float32) for _uid, e in iter_embeddings(out)])
    book = save_codebook(tmp_path / "km.pt", rows[:3], metric="cosine")
    quantize_unit_set(out, book, out_dir=tmp_path / "quantized", progress=False)
    quantized = read_meta(tmp_path / "quantized")
    assert [quantized.resolve_audio(r).resolve() for r in read_units(tmp_path / "quantized")] == \
        [meta.resolve_audio(r).resolve() for r in read_units(out)]
    export_resynth(tmp_path / "quantized", tmp_path / "resynth.txt", expand=False)
    lines = [ast.literal_eval(line) for line in (tmp_path / "resynth.txt").read_text().splitlines()]
    assert len(lines) == 6 and all(Path(line["audio"]).is_file() for line in lines)
    from speechunits.sylber.segment_sources import unit_set_segments

    assert sorted(unit_set_segments(out)) == sorted(u.id for u in utts)  # stage-1 training's reader


# ------------------------------------------------------------------ the runner itself
def test_shard_of_is_round_robin_over_sorted_ids() -> None:
    utts = [Utterance(i, f"/a/{i}.wav") for i in ["c", "a", "e", "b", "d"]]
    assert [[u.id for u in shard_of(utts, j, 2)] for j in range(2)] == [["a", "c", "e"], ["b", "d"]]
    assert sum(len(shard_of(utts, j, 3)) for j in range(3)) == 5


def test_command_line_round_trips_the_options() -> None:
    for add_arguments, argv in [
        (tok.add_arguments, ["--model", "m.pt", "--data", "d", "--out", "o", "--no-embeddings", "--reset-count",
                             "--batch-seconds", "12.5", "--nj", "3"]),
        (fu.add_arguments, ["--model", "m.pt", "--layer", "6", "--data", "d", "--out", "o", "--codebook", "c.pt",
                            "--force"]),
        (bs.add_arguments, ["--data", "d", "--out", "o", "--smooth-ms", "12.25", "--nj", "2"]),
    ]:
        args = _parse(add_arguments, argv)
        written = command_line(add_arguments, args, job=1, threads=2)
        again = _parse(add_arguments, written)
        assert vars(again) == {**vars(args), "job": 1, "threads": 2}
    assert "--k" not in command_line(fu.add_arguments, _parse(fu.add_arguments, [
        "--model", "m", "--layer", "1", "--data", "d", "--out", "o", "--codebook", "c"]))


def test_help_names_the_launchers_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "'local'" in text and "'slurm" in text and "conf/slurm.conf" in text
    assert set(LAUNCHERS) == {"local", "slurm"}


def _runner(out: Path, utts: list[Utterance], nj: int = 2) -> JobRunner[UnitShardWriter]:
    return unit_set_runner("toy", utts=utts, out=out, nj=nj, effective={"verb": "toy"}, inputs=[], progress=False)


def _toy_shard(runner: JobRunner[UnitShardWriter], job: int, *, drop: str | None = None, bad: str | None = None) -> None:
    with runner.open_shard(job, kind="syllable", sample_rate=SR, hop=320) as shard:
        for utt in shard.todo:
            if utt.id == drop:
                continue  # neither written nor listed bad: the bug the runner must catch
            if utt.id == bad:
                shard.progress(0, [f"{utt.id}\tbroken"])
                continue
            shard.writer.add(id=utt.id, audio=utt.audio, num_samples=SR, sample_rate=SR, starts=[0], ends=[5])
            shard.progress(1, audio_seconds=1.0)


def test_accounting_violations_are_internal_errors(tmp_path: Path) -> None:
    utts = [Utterance(f"u{i}", f"/corpus/u{i}.wav") for i in range(5)]
    runner = _runner(tmp_path / "a", utts)
    with pytest.raises(InternalError, match=r"internal error: toy job 1: 1 utterance\(s\) neither written nor listed "
                                            r"bad: u3"):
        _toy_shard(runner, 1, drop="u3")
    assert not runner.shard_done(1) and (tmp_path / "a" / "units.1.partial.jsonl").is_file()  # resumable
    _toy_shard(runner, 1)  # the rerun resumes and finishes
    _toy_shard(runner, 0, bad="u2")
    record = json.loads((tmp_path / "a" / "toy.0.json").read_text())
    assert record["finished"] and (record["given"], record["written"], record["bad"]) == (3, 2, 1)
    (tmp_path / "a" / "bad_utts.0.txt").write_text("")  # a lost bad line: u2 is nowhere now
    with pytest.raises(InternalError, match=r"neither written nor listed bad: u2"):
        runner.merge()
    assert not (tmp_path / "a" / "provenance.json").exists()


def test_shard_of_another_config_is_cleared_and_finished_shards_skipped(tmp_path: Path) -> None:
    utts = [Utterance(f"u{i}", f"/corpus/u{i}.wav") for i in range(4)]
    out = tmp_path / "o"
    first = _runner(out, utts)
    _toy_shard(first, 0)
    assert first.unfinished() == [1]
    other = unit_set_runner("toy", utts=utts, out=out, nj=2, effective={"verb": "toy", "x": 1}, inputs=[],
                            progress=False)
    assert other.unfinished() == [0, 1]
    with other.open_shard(0, kind="syllable", sample_rate=SR, hop=320) as shard:
        assert [u.id for u in shard.todo] == ["u0", "u2"]  # cleared, not resumed
        for utt in shard.todo:
            shard.writer.add(id=utt.id, audio=utt.audio, num_samples=SR, sample_rate=SR, starts=[1], ends=[2])
            shard.progress(1)
    assert other.shard_done(0) and not first.shard_done(0)


def test_audio_root_is_the_common_directory_and_pipes_stay(tmp_path: Path) -> None:
    utts = [Utterance("a", "/corpus/x/a.wav"), Utterance("b", "/corpus/y/z/b.flac"),
            Utterance("c", "/usr/bin/sox /corpus/c.flac -t wav - |")]
    runner = _runner(tmp_path / "o", utts, nj=1)
    assert runner.output.audio_root == "/corpus"
    _toy_shard(runner, 0)
    runner.merge()
    meta = read_meta(tmp_path / "o")
    assert meta.audio_root == "/corpus"
    assert {r.id: r.audio for r in read_units(tmp_path / "o")} == {
        "a": "x/a.wav", "b": "y/z/b.flac", "c": "/usr/bin/sox /corpus/c.flac -t wav - |"}
