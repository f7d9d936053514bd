"""Fuzzing of the YAML config readers: load_structured through train.config.load_config and
slu.config.load_cil_config (issue 17, text readers).

Property: every YAML file either loads or raises :class:`ConfigError` whose message names the
file (and the line, for a YAML syntax error). Never another exception type (yaml.YAMLError,
UnicodeDecodeError, OSError, omegaconf errors, AssertionError), never a hang.

Cases (hypothesis, derandomized): 200 mutated TrainConfig YAML files, 200 mutated CILConfig
YAML files, 200 with one key's value replaced by a generated YAML value (both schemas), 60
generated YAML documents, 150 generated ``key=value`` overrides: 810 in all, plus the
regression tests below.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from mutations import JSON_VALUES, fuzz_settings, mutated  # noqa: E402

from speechunits.errors import ConfigError  # noqa: E402
from speechunits.slu.config import CILConfig, config_dict, load_cil_config  # noqa: E402
from speechunits.train.config import TrainConfig, config_to_yaml, load_config  # noqa: E402

FUZZ = fuzz_settings(200, 5000, HealthCheck.data_too_large)
VALUES = settings(FUZZ, max_examples=200)
GEN = settings(FUZZ, max_examples=60)

VALID = {
    "train": config_to_yaml(TrainConfig(task={"crop_seconds": 5, "name": "x"})).encode(),
    "cil": OmegaConf.to_yaml(OmegaConf.create(config_dict(CILConfig()))).encode(),
}
LOADERS: dict[str, Callable[[Path], Any]] = {"train": load_config, "cil": load_cil_config}
YAML_SCALARS = st.sampled_from(
    ["", "~", "null", "true", "no", "1e400", ".nan", "-.inf", "0x1F", "'x'", '"\\xff"', "[1, 2", "{a: 1}", "[]", "{}",
     "${missing}", "${oc.env:NOPE_NOT_SET}", "&a 1", "*a", "!!binary aGk=", "!!python/object:os.system x", "|",
     "- 1", "2001-12-14", "99999999999999999999999", "'" + "1" * 5000 + "'", "1" * 5000, "{a: ${b}}", "?"]
) | JSON_VALUES.map(lambda v: json.dumps(v))


def _load(kind: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conf.yaml"
        path.write_bytes(data)
        try:
            LOADERS[kind](path)
        except ConfigError as err:
            assert str(path) in str(err), err
            if err.line is not None:
                assert f"{path}:{err.line}:" in str(err) and err.line >= 1, err


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID["train"]))
def test_mutated_train_config(data: bytes) -> None:
    _load("train", data)


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID["cil"]))
def test_mutated_cil_config(data: bytes) -> None:
    _load("cil", data)


@pytest.mark.timeout(60)
@VALUES
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_config_value_replaced(kind: str, data: st.DataObject) -> None:
    lines = VALID[kind].decode().split("\n")
    candidates = [i for i, line in enumerate(lines) if ":" in line]
    i = data.draw(st.sampled_from(candidates))
    key = lines[i].split(":", 1)[0]
    lines[i] = f"{key}: {data.draw(YAML_SCALARS)}"
    _load(kind, "\n".join(lines).encode("utf-8", "surrogatepass"))


@pytest.mark.timeout(60)
@GEN
@given(kind=st.sampled_from(sorted(VALID)), text=st.text(max_size=80) | YAML_SCALARS)
def test_generated_yaml(kind: str, text: str) -> None:
    _load(kind, text.encode("utf-8", "surrogatepass"))


# ----------------------------------------------------------------------------- regressions

REGRESSIONS = {
    "syntax": (b"lr: [1\n", r"conf\.yaml:2: invalid YAML"),
    "duplicate_key": (b"lr: 1\nlr: 2\n", r"conf\.yaml:2: invalid YAML \(found duplicate key"),
    "not_utf8": (b"out_dir: \xff\n", r"conf\.yaml: expected UTF-8"),
    "top_level_list": (b"- 1\n", r"conf\.yaml: expected a YAML mapping"),
    "top_level_scalar": (b"5\n", r"conf\.yaml: .*object type"),
    "unresolved_interpolation": (b"lr: ${foo}\n", r"conf\.yaml: .*foo"),
    "unresolved_in_free_mapping": (b"task: {a: ${x}}\n", r"conf\.yaml"),
    "list_for_mapping": (b"task: [1]\n", r"conf\.yaml: Cannot merge incompatible container types"),
    "unhashable_key": (b"task: {[1]: 1}\n", r"conf\.yaml:1: invalid YAML \(found unhashable key"),
    "huge_integer": (b"log_every: " + b"1" * 5000 + b"\n", r"conf\.yaml: invalid YAML \(ValueError"),
    "deep_nesting": (b"lr: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", r"conf\.yaml"),
}


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_regression_yaml(tmp_path: Path, kind: str, case: str) -> None:
    """Each of these escaped as yaml.YAMLError, UnicodeDecodeError, TypeError, OSError,
    InterpolationKeyError or AssertionError before load_structured wrapped them."""
    data, pattern = REGRESSIONS[case]
    if kind == "cil":
        data = data.replace(b"lr:", b"seed:").replace(b"task:", b"losses:").replace(b"log_every:", b"seed:").replace(b"out_dir:", b"corpus:")
    path = tmp_path / "conf.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=pattern):
        LOADERS[kind](path)


def test_empty_yaml_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_bytes(b"")
    assert load_config(path) == TrainConfig()


def test_regression_cil_train_task_list(tmp_path: Path) -> None:
    """``train: {task: [1]}`` reached load_structured's merge of the ``base`` mapping and escaped as TypeError."""
    path = tmp_path / "conf.yaml"
    path.write_bytes(b"train: {task: [1]}\n")
    with pytest.raises(ConfigError, match=r"conf\.yaml: train: Cannot merge"):
        load_cil_config(path)


@pytest.mark.parametrize("value", [b"[1]", b"{a: 1}"])
def test_regression_cil_encoder_type_unhashable(tmp_path: Path, value: bytes) -> None:
    path = tmp_path / "conf.yaml"
    path.write_bytes(b"model:\n  encoder:\n    type: " + value + b"\n")
    with pytest.raises(ConfigError, match=r"conf\.yaml: model\.encoder\.type"):
        load_cil_config(path)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=150)
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_generated_overrides(kind: str, data: st.DataObject) -> None:
    """``key=value`` overrides on top of a valid file: ConfigError naming ``<command line>`` or the file.
    Found: a value that is not YAML (``seed={``, ``seed=*a``, a control character) escaped as yaml.YAMLError."""
    keys = [line.split(":", 1)[0].strip() for line in VALID[kind].decode().split("\n") if ":" in line]
    key = data.draw(st.sampled_from(keys + ["model.encoder.type", "task.x", "train.lr", "nope", "a.b.c", ""]))
    value = data.draw(YAML_SCALARS | st.text(max_size=20))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conf.yaml"
        path.write_bytes(VALID[kind])
        try:
            LOADERS[kind](path, [f"{key}={value}"])
        except ConfigError as err:
            assert "<command line>" in str(err) or str(path) in str(err), err


@pytest.mark.parametrize("value", ["{", "\x1f", '"', "*a", "[1", "1" * 5000])
def test_regression_override_value_not_yaml(value: str) -> None:
    """from_dotlist's yaml errors (and the digit-limit ValueError) escaped load_structured."""
    with pytest.raises(ConfigError, match=r"<command line>: "):
        load_config(None, [f"seed={value}"])


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_regression_learning_rate_must_be_finite(value: str) -> None:
    """``lr: .nan`` passed validation (``nan <= 0`` is false) and would have trained on NaN steps."""
    with pytest.raises(ConfigError, match="lr=.*positive finite"):
        load_config(None, [f"lr={value}"])
