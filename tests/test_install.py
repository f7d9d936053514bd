"""The Makefile's install logic, with apt/dpkg/id/python replaced by stubs on PATH.

Nothing is installed: the stubs record how they were called, so the tests check what
`make install` would do as root or not, with packages present or missing, and when pip
must run (a stamp named after the sha256 of pyproject.toml).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng sox libsndfile1 util-linux slurm-wlm munge".split()

pytestmark = pytest.mark.make


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


def make(tmp_path: Path, *args: str, uid: int = 0, installed: tuple[str, ...] = tuple(PACKAGES)
         ) -> subprocess.CompletedProcess[str]:
    """Run make in the repo with stubbed id/dpkg-query/apt-get; apt-get logs to tmp/apt.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub(bin_dir, "id", f'[[ "$1" == -u ]] && echo {uid} || /usr/bin/id "$@"')
    cases = " ".join(installed) or "__none__"
    stub(bin_dir, "dpkg-query",
         f'pkg="${{@: -1}}"; for p in {cases}; do [[ "$p" == "$pkg" ]] && {{ printf "install ok installed"; exit 0; }}; done; exit 1')
    stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {tmp_path}/apt.log')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["make", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def apt_log(tmp_path: Path) -> str:
    log = tmp_path / "apt.log"
    return log.read_text() if log.exists() else ""


def test_all_present_runs_no_apt(tmp_path: Path) -> None:
    r = make(tmp_path, "system-deps")
    assert r.returncode == 0, r.stderr
    assert "all present" in r.stdout
    assert apt_log(tmp_path) == ""


def test_missing_as_root_installs_only_the_missing(tmp_path: Path) -> None:
    r = make(tmp_path, "system-deps", installed=("festival", "festvox-kallpc16k", "festvox-kdlpc16k",
                                                 "festvox-us-slt-hts", "libsndfile1", "util-linux", "slurm-wlm",
                                                 "munge"))
    assert r.returncode == 0, r.stderr
    lines = apt_log(tmp_path).splitlines()
    assert lines[0] == "apt-get update"
    assert lines[1].startswith("apt-get install -y") and lines[1].split()[-2:] == ["espeak-ng", "sox"]


def test_missing_not_root_fails_with_command(tmp_path: Path) -> None:
    r = make(tmp_path, "system-deps", uid=1000, installed=())
    assert r.returncode != 0
    assert "sudo apt-get update && sudo apt-get install -y " + " ".join(PACKAGES) in r.stderr
    assert apt_log(tmp_path) == ""


def fake_venv(tmp_path: Path, stamp_hash: str | None) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub(venv / "bin", "python", f'echo "python $*" >> {tmp_path}/pip.log')
    if stamp_hash is not None:
        (venv / f".installed-{stamp_hash}").touch()
    return venv


def pyproject_sha() -> str:
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def test_install_is_a_noop_when_stamp_matches(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, pyproject_sha())
    r = make(tmp_path, "install", f"VENV={venv}")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "pip.log").exists()
    assert "is up to date" in r.stdout


def test_install_reruns_pip_when_pyproject_changed(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, "0" * 64)  # stamp of an older pyproject.toml
    r = make(tmp_path, "install", f"VENV={venv}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pip.log").read_text().splitlines() == ["python -m pip install -e .[test,fairseq2]"]
    stamps = sorted(p.name for p in venv.glob(".installed-*"))
    assert stamps == [f".installed-{pyproject_sha()}"]  # the old stamp is gone


def test_venv_refuses_wrong_python(tmp_path: Path) -> None:
    bin_dir = tmp_path / "pybin"
    bin_dir.mkdir()
    stub(bin_dir, "python3.10", '[[ "$1" == -V ]] && echo "Python 3.10.0"; exit 1')
    r = make(tmp_path, "venv", f"VENV={tmp_path / 'v'}", f"PYTHON={bin_dir / 'python3.10'}")
    assert r.returncode != 0
    assert "needs Python 3.11" in r.stderr
    assert not (tmp_path / "v").exists()


def test_dry_run_of_fresh_install(tmp_path: Path) -> None:
    r = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for word in [*PACKAGES, "apt-get install -y", "-m venv", "pip install -e '.[test,fairseq2]'",
                 f"{tmp_path / 'venv'}/.installed-{pyproject_sha()}"]:
        assert word in r.stdout, word
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("test_rc", [0, 3])
def test_ci_run_installs_then_tests_with_ci_true(tmp_path: Path, test_rc: int) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "make", f'echo "make $* CI=$CI" >> {tmp_path}/make.log; [[ "$1" == test ]] && exit {test_rc}; exit 0')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CI": ""}
    r = subprocess.run([str(REPO / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == test_rc, r.stdout + r.stderr
    assert (tmp_path / "make.log").read_text().splitlines() == ["make install CI=true", "make test CI=true"]
    assert "ci: make install took" in r.stdout and "ci: make test took" in r.stdout
    assert "ci: wall time:" in r.stdout
