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


def test_help_shows_option_descriptions(tmp_path: Path) -> None:
    script = tmp_path / "d.sh"
    script.write_text(f"nj=4        # parallel jobs\nout=exp  # where outputs go\n. {PARSE}\necho ran\n")
    r = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "--nj (current: '4')  parallel jobs" in r.stdout
    assert "--out (current: 'exp')  where outputs go" in r.stdout


def test_given_options_and_user_paths(tmp_path: Path) -> None:
    stages = PARSE.parent / "stages.sh"
    script = tmp_path / "u.sh"
    script.write_text(
        f"data=data\nexp=exp\nabs=/x\n. {PARSE}\n. {stages}\n"
        f'echo "given=$PO_GIVEN"\nuser_paths /caller data exp abs\necho "data=$data exp=$exp abs=$abs"\n'
    )
    r = subprocess.run(["bash", str(script), "--exp", "../e", "--abs", "/y"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("=", 1)[1].split() == ["exp", "abs"]
    # defaults stay relative to the recipe; given relative paths are resolved from the caller
    assert lines[1] == "data=data exp=/e abs=/y"


def test_value_that_looks_like_an_option(tmp_path: Path) -> None:
    r = run(tmp_path, "--foo-bar", "--min-x 2")
    assert r.returncode == 0 and "foo=--min-x 2" in r.stdout


def test_options_named_like_the_parsers_own_variables(tmp_path: Path) -> None:
    """--name, --value and --old once set the parser's locals instead of the script's options."""
    script = tmp_path / "n.sh"
    script.write_text(f"name=a\nvalue=b\nold=c\n. {PARSE}\necho \"$name $value $old\"\n")
    r = subprocess.run(["bash", str(script), "--name", "x", "--value=y", "--old", "z"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "x y z"
