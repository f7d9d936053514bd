"""A full disk or a read-only output directory in the middle of a real sharded job (``speechunits tokenize``).

The fault is injected (an ``OSError`` raised at the N-th atomic write, or half-way through a
line of the shard's spool): the command must exit with one clear ``error: <file>: no space
left on device ...`` line (no traceback), leave no temporary file and nothing partial under a
final name, and a rerun after "space is freed" must produce exactly the files of an
uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from speechunits import cli, io_utils
from speechunits.units import writer as unit_writer
from speechunits.units.writer import partial_units_name
from synthetic_inputs import tokenize_corpus

MERGE = 0.9


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny random Sylber checkpoint + 5 short wavs + a JSONL manifest + a norm threshold."""
    return tokenize_corpus(tmp_path_factory.mktemp("diskfull"), 5, MERGE)


def _argv(corpus: dict, out: Path) -> list[str]:
    return ["tokenize", "--model", str(corpus["ckpt"]), "--data", str(corpus["manifest"]), "--out", str(out),
            "--device", "cpu", "--norm-threshold", repr(corpus["norm"]), "--merge-threshold", repr(MERGE),
            "--batch-seconds", "1.0", "--num-workers", "1", "--threads", "1"]


def _tree(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (relative name -> bytes); provenance.json without its timestamp."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "provenance.json":
                prov = json.loads(data)
                prov.pop("finished", None)
                data = json.dumps(prov, sort_keys=True).encode()
            files[p.relative_to(out).as_posix()] = data
    return files


@pytest.fixture(scope="module")
def reference(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run in another directory, and the paths of its atomic writes in order."""
    out = tmp_path_factory.mktemp("ref") / "units"
    calls: list[Path] = []
    real = io_utils.atomic_write_bytes

    def counting(path, data):
        calls.append(Path(path))
        return real(path, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(io_utils, "atomic_write_bytes", counting)
    try:
        assert cli.main(_argv(corpus, out)) == 0
    finally:
        mp.undo()
    assert (out / "provenance.json").is_file() and (out / "units.jsonl").is_file()
    return {"out": out, "tree": _tree(out), "calls": calls}


def _check_left_state(out: Path) -> None:
    """No temporary file; every file under a final name is whole; provenance (the completeness mark) absent."""
    assert not (out / "provenance.json").exists()
    names = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in names if ".tmp" in p.name], names
    for p in names:
        if "partial" in p.name:  # a shard's resumable spool: a cut last line is dropped on resume
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
        elif p.suffix == ".npy":
            np.load(p)


def _fail_nth_atomic_write(monkeypatch: pytest.MonkeyPatch, n: int, code: int) -> list[Path]:
    """Make the ``n``-th atomic write fail with ``code`` half-way through writing its temporary file."""
    real = io_utils.atomic_write_bytes
    calls: list[Path] = []

    def faulty(path, data):
        calls.append(Path(path))
        if len(calls) != n:
            return real(path, data)
        with io_utils.atomic_path(path) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
            raise OSError(code, os.strerror(code), str(tmp))

    monkeypatch.setattr(io_utils, "atomic_write_bytes", faulty)
    return calls


def _assert_clear_error(capsys: pytest.CaptureFixture, path: Path, problem: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {problem} (errno "), err


def test_disk_full_at_atomic_writes_then_rerun(corpus: dict, reference: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    total = len(reference["calls"])
    assert total >= 4
    for n in (2, total - 1, total):  # a shard record / partial meta, the merged meta, provenance (the last)
        out = tmp_path / f"units{n}"
        with pytest.MonkeyPatch.context() as mp:
            calls = _fail_nth_atomic_write(mp, n, errno.ENOSPC)
            assert cli.main(_argv(corpus, out)) == 2
        assert len(calls) == n
        _assert_clear_error(capsys, calls[-1], "no space left on device")
        _check_left_state(out)
        assert cli.main(_argv(corpus, out)) == 0  # "space freed": the rerun completes
        assert _tree(out) == reference["tree"], n


def test_disk_full_mid_line_of_the_shard_spool_then_rerun(corpus: dict, reference: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """A write cut half-way through a units line (as a real full disk does) names the shard's spool file."""
    real_enter = unit_writer.UnitSetWriter.__enter__

    class FullSpool:
        def __init__(self, f):
            self._f, self._writes = f, 0

        def write(self, blob):
            self._writes += 1
            if self._writes == 3:
                self._f.write(blob[: len(blob) // 2])
                self._f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # like file.write: no file name
            return self._f.write(blob)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def enter(self):
        real_enter(self)
        self._spool = FullSpool(self._spool)
        return self

    out = tmp_path / "units"
    monkeypatch.setattr(unit_writer.UnitSetWriter, "__enter__", enter)
    assert cli.main(_argv(corpus, out)) == 2
    _assert_clear_error(capsys, out / partial_units_name(0), "no space left on device")
    _check_left_state(out)
    partial = (out / partial_units_name(0)).read_bytes()
    assert partial and not partial.endswith(b"\n")  # the cut line is there; the rerun must drop it
    monkeypatch.setattr(unit_writer.UnitSetWriter, "__enter__", real_enter)
    assert cli.main(_argv(corpus, out)) == 0
    assert _tree(out) == reference["tree"]


def test_read_only_output_directory_then_rerun(corpus: dict, reference: dict, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "units"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through chmod: inject the error a read-only mount gives instead
        with pytest.MonkeyPatch.context() as mp:
            calls = _fail_nth_atomic_write(mp, 1, errno.EROFS)
            assert cli.main(_argv(corpus, out)) == 2
        _assert_clear_error(capsys, calls[-1], "read-only file system")
    else:
        out.chmod(0o500)
        try:
            assert cli.main(_argv(corpus, out)) == 2
        finally:
            out.chmod(0o700)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and lines[0].startswith(f"error: {out}/") and ": permission denied (errno 13 EACCES)" \
            in lines[0], err
    _check_left_state(out)
    assert cli.main(_argv(corpus, out)) == 0
    assert _tree(out) == reference["tree"]


def test_main_names_an_unwritable_file_no_writer_named(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """An OSError of a full disk escaping any command becomes the one-line error; other OSErrors pass."""
    from speechunits.tokenize import tokenize_cli

    def full(args):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/data/out/units.jsonl")

    monkeypatch.setattr(tokenize_cli, "run", full)
    assert cli.main(["tokenize", "--model", "m", "--data", "d", "--out", "o"]) == 2
    assert capsys.readouterr().err.startswith("error: /data/out/units.jsonl: disk quota exceeded (errno ")

    def missing(args):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    monkeypatch.setattr(tokenize_cli, "run", missing)
    with pytest.raises(FileNotFoundError):
        cli.main(["tokenize", "--model", "m", "--data", "d", "--out", "o"])


TMPFS_SCRIPT = r"""
set -u
mount -t tmpfs -o size="$SIZE"k tmpfs "$MNT"
"$@" --out "$MNT/units" 2> "$WORK/full.err"; echo $? > "$WORK/full.rc"
cp -a "$MNT/units" "$WORK/left"
mount -o remount,size=65536k "$MNT"
"$@" --out "$MNT/units" 2> "$WORK/rerun.err"; echo $? > "$WORK/rerun.rc"
cp -a "$MNT/units" "$WORK/final"
umount "$MNT"
mount -t tmpfs -o size=65536k,ro tmpfs "$MNT"
"$@" --out "$MNT/units" 2> "$WORK/ro.err"; echo $? > "$WORK/ro.rc"
"""


@pytest.mark.tmpfs
def test_real_full_tmpfs_and_read_only_mount_with_two_jobs_then_rerun(corpus: dict, reference: dict,
                                                                      tmp_path: Path) -> None:
    """A real full disk: ``tokenize --nj 2`` writing to a tmpfs of half the output's size (mounted
    in a user and mount namespace, ``unshare -rm``) fails with the job's clear error line in its
    log tail and leaves no temporary; after a remount with space the rerun ends with the
    files of an uninterrupted ``--nj 2`` run. A read-only tmpfs stops the command with
    ``read-only file system`` (from this process, which cannot make the output directory; the
    rerun after a read-only failure is tested with an injected EROFS above)."""
    import subprocess
    import sys

    used_kib = sum(p.stat().st_blocks * 512 for p in reference["out"].rglob("*") if p.is_file()) // 1024
    mnt, work = tmp_path / "mnt", tmp_path / "work"
    mnt.mkdir()
    work.mkdir()
    argv = [a for a in _argv(corpus, Path("unused")) if a not in ("--out", "unused")]
    cmd = ["unshare", "-rm", "bash", "-c", TMPFS_SCRIPT, "tmpfs-test",
           sys.executable, "-m", "speechunits", *argv, "--nj", "2"]
    env = {**os.environ, "SIZE": str(max(16, used_kib // 2)), "MNT": str(mnt), "WORK": str(work)}
    subprocess.run(cmd, env=env, check=True, timeout=600)
    subprocess.run([*cmd[6:], "--out", str(work / "reference")], check=True, timeout=600, capture_output=True)
    rc = {name: int((work / f"{name}.rc").read_text()) for name in ("full", "rerun", "ro")}
    err = {name: (work / f"{name}.err").read_text() for name in rc}
    assert rc == {"full": 1, "rerun": 0, "ro": 2}, (rc, err)  # 1: a local job failed; 2: this process
    for name, problem in (("full", "no space left on device (errno 28 ENOSPC)"),
                          ("ro", "read-only file system (errno 30 EROFS)")):
        assert "Traceback" not in err[name], err[name]
        assert re.search(rf"error: {re.escape(str(mnt))}/units(/\S+)?: {re.escape(problem)}", err[name]), err[name]
    left = work / "left"
    assert not [p for p in left.rglob("*") if ".tmp" in p.name], sorted(left.rglob("*"))
    assert not (left / "provenance.json").exists()

    def outputs(out: Path) -> dict[str, bytes]:  # the logs of local jobs and the provenance of --nj 2 aside
        return {k: v for k, v in _tree(out).items() if not k.startswith("log/") and k != "provenance.json"}

    assert (work / "final" / "provenance.json").is_file()
    assert outputs(work / "final") == outputs(work / "reference")


# ------------------------------------------------------------------ a killed writer's temporary
def test_atomic_write_removes_only_a_dead_local_writers_temporary(tmp_path: Path) -> None:
    """The next atomic write of a name removes the temporaries of that name whose writer (this
    host, pid in the name) is gone; a live writer's, another host's and another name's stay
    (chaos harness, issue 17)."""
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {"stale": f".x.json.{host}.{dead.pid}.ab_1.tmp.json",
                 "live": f".x.json.{host}.{live.pid}.ab_2.tmp.json",
                 "foreign": f".x.json.other.host.{dead.pid}.ab_3.tmp.json",
                 "other-name": f".y.json.{host}.{dead.pid}.ab_4.tmp.json"}
        for name in names.values():
            (tmp_path / name).write_text("{")
        io_utils.atomic_write_json(tmp_path / "x.json", {"a": 1})
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["x.json", *(names[k] for k in ("live", "foreign", "other-name"))])
    finally:
        live.kill()
        live.wait()


def test_outputs_get_the_umask_permissions_not_tempfiles_0600(tmp_path: Path) -> None:
    """A file written through a temporary has the mode a plain ``open`` would give it (tempfile
    makes 0600, a rename keeps it: outputs hidden from the other users of a shared machine);
    so does a Kaldi data dir swapped into place (mkdtemp makes 0700)."""
    from speechunits.data.kaldi import write_kaldi_dir
    from speechunits.data.utterance import Utterance

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    io_utils.atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == io_utils.default_mode()
    write_kaldi_dir([Utterance("u1", "/a/u1.wav", text="a", speaker="s")], tmp_path / "data")
    (tmp_path / "plain_dir").mkdir()
    assert (tmp_path / "data").stat().st_mode & 0o777 == (tmp_path / "plain_dir").stat().st_mode & 0o777
