"""Tests for utils/parse_options.sh (Kaldi-style option parsing), run via bash."""
import subprocess
from pathlib import Path

import pytest

PARSE = Path(__file__).resolve().parents[1] / "utils" / "parse_options.sh"
SCRIPT = f"""stage=0
use_gpu=false
foo_bar=x
help_message="Stages: 0 data prep"
. {PARSE}
echo "stage=$stage gpu=$use_gpu foo=$foo_bar rest=$*"
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "s.sh"
    script.write_text(SCRIPT)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_space_and_equals_forms(tmp_path: Path) -> None:
    r = run(tmp_path, "--stage", "3", "--foo-bar=y", "a", "b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=3 gpu=false foo=y rest=a b"


def test_unknown_option_lists_valid(tmp_path: Path) -> None:
    r = run(tmp_path, "--nope", "1")
    assert r.returncode != 0
    assert "unknown option --nope" in r.stderr and "--foo-bar" in r.stderr


@pytest.mark.parametrize("value,ok", [("true", True), ("false", True), ("maybe", False)])
def test_boolean_values(tmp_path: Path, value: str, ok: bool) -> None:
    r = run(tmp_path, "--use-gpu", value)
    assert (r.returncode == 0) == ok
    if ok:
        assert f"gpu={value}" in r.stdout


def test_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("stage=5\nfoo_bar=z\n")
    r = run(tmp_path, "--config", str(conf))
    assert r.returncode == 0 and "stage=5" in r.stdout and "foo=z" in r.stdout


def test_missing_config_file(tmp_path: Path) -> None:
    r = run(tmp_path, "--config", str(tmp_path / "missing.conf"))
    assert r.returncode != 0 and "missing.conf" in r.stderr


def test_help_prints_stage_table_and_values(tmp_path: Path) -> None:
    r = run(tmp_path, "--stage", "2", "--help")
    assert r.returncode == 0
    assert "Stages: 0 data prep" in r.stdout and "--stage (current: '2')" in r.stdout
    assert "rest=" not in r.stdout  # exits before the script body runs
