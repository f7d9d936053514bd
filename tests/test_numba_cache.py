"""numba's cache of the toolkit's kernels goes to a user cache directory, never into the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import speechunits
from speechunits.numba_cache import ENV, configure_numba_cache, default_cache_dir

PACKAGE = Path(speechunits.__file__).resolve().parent
REPO = PACKAGE.parent

# compiles one small cached kernel (eval/intelligibility.py's Levenshtein) and reports numba's setting
SCRIPT = """
import numba.core.config as config
from speechunits.eval.intelligibility import levenshtein
assert levenshtein([1, 2, 3], [1, 3]) == 1
print(config.CACHE_DIR)
"""


def _cache_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.suffix in {".nbi", ".nbc"}}


def _run(env: dict[str, str], script: str = SCRIPT) -> str:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {ENV, "XDG_CACHE_HOME"}}
    env["HOME"] = str(tmp_path / "home")
    return env


def test_kernels_cache_under_xdg_cache_home_not_in_the_package(tmp_path: Path) -> None:
    before = _cache_files(PACKAGE)
    env = {**_clean_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    expected = tmp_path / "xdg" / "speechunits" / "numba"
    assert _run(env) == str(expected)
    assert any(p.name.startswith("intelligibility._levenshtein") for p in _cache_files(expected))
    assert _cache_files(PACKAGE) == before  # nothing new next to the sources


def test_home_cache_and_an_explicit_numba_cache_dir(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    script = "import speechunits, os, numba.core.config as c; print(os.environ['NUMBA_CACHE_DIR'], c.CACHE_DIR)"
    home_cache = tmp_path / "home" / ".cache" / "speechunits" / "numba"
    assert _run(env, script).split() == [str(home_cache)] * 2  # exported too: local job subprocesses agree
    mine = str(tmp_path / "mine")
    assert _run({**env, ENV: mine}, script).split() == [mine, mine]  # the user's own setting wins
    # numba imported before the toolkit: its config is pointed at the cache directory as well
    late = "import numba.core.config as c; import speechunits; print(c.CACHE_DIR)"
    assert _run(env, late) == str(home_cache)


def test_configure_leaves_a_set_cache_dir_alone(monkeypatch) -> None:
    import numba.core.config as config

    monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)  # restored after the test
    monkeypatch.setenv(ENV, "/somewhere/else")
    assert configure_numba_cache() == "/somewhere/else" and config.CACHE_DIR == "/somewhere/else"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", "/home/u")
    assert default_cache_dir() == Path("/home/u/.cache/speechunits/numba")
