"""Fuzzing of the checkpoint readers: :func:`speechunits.train.checkpoint.load_checkpoint`,
:func:`load_latest_valid` and :func:`speechunits.encoders.checkpoints.load_encoder`.

Valid files come from the project's own writers: a training checkpoint as the Trainer packs it
(:func:`pack_trained_state` + :func:`capture_rng_state`, written by :func:`save_checkpoint`) and an
encoder file written by :func:`save_encoder` (a tiny model). They are then damaged at the byte level
(truncated at random offsets, bytes flipped) or rewritten with a damaged payload (non-dict
payloads, missing/renamed/extra keys, wrong format tag, tensors of the wrong shape). The property:
every input either loads (a dict holding every required entry; a :class:`SpeechEncoder`) or raises
:class:`~speechunits.errors.CheckpointError` naming the file; never another exception, never a
hang. ``load_latest_valid`` must skip a damaged newest checkpoint (with a warning) and return the
previous valid one. Deterministic (``derandomize=True``): 60 byte-level cases per reader
(load_checkpoint, load_encoder), 40 payload cases per reader and 30 load_latest_valid cases
= 230 generated cases, plus explicit tests; about 10 s on one core.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import CheckpointError, SpeechUnitsError
from speechunits.train.checkpoint import (FORMAT, READABLE_FORMATS, REQUIRED_KEYS, OptimizerState, checkpoint_path,
                                          load_checkpoint, load_latest_valid, pack_trained_state, save_checkpoint,
                                          save_torch_file)
from speechunits.train.rng import capture_rng_state
from synthetic_inputs import randomised_tiny_model

sys.path.insert(0, str(Path(__file__).parent))
from mutations import fuzz_settings  # noqa: E402


def _fuzz(n: int) -> settings:
    return fuzz_settings(n, 10000, HealthCheck.function_scoped_fixture)


_counter = itertools.count()


def train_state(step: int = 1) -> dict:
    """A training checkpoint as :meth:`Trainer._state` packs it, for a tiny model and Adam."""
    torch.manual_seed(step)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return {"format": FORMAT, "step": step, "epoch": 0, "batch_in_epoch": step, "world_size": 1,
            **pack_trained_state({"model": model.state_dict()}, [OptimizerState("main", opt.state_dict(), None)]),
            "task": None, "rng": [capture_rng_state()], "config": {"lr": 1e-3, "max_steps": 10}, "metrics": {}}


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes, dict]:
    tmp = tmp_path_factory.mktemp("fuzz_ckpt")
    train = save_checkpoint(checkpoint_path(tmp / "run", 1), train_state(1))
    enc = tmp / "encoder.pt"
    model = randomised_tiny_model()
    save_encoder(enc, model)
    assert load_checkpoint(train)["step"] == 1 and isinstance(load_encoder(enc), SpeechEncoder)
    payload = torch.load(enc, weights_only=True)
    return tmp, train.read_bytes(), enc.read_bytes(), payload


# (kind, position fraction, seed)
BYTE_MUTATION = st.tuples(st.sampled_from(["truncate", "flip", "multi_flip", "zero_run"]),
                          st.floats(0.0, 1.0, allow_nan=False), st.integers(0, 2**31 - 1))


def damage_bytes(data: bytes, kind: str, frac: float, seed: int) -> bytes:
    d = bytearray(data)
    at = min(int(frac * len(d)), len(d) - 1)
    if kind == "truncate":
        return bytes(d[:at])
    if kind == "flip":
        d[at] ^= 1 + seed % 255
    elif kind == "zero_run":
        d[at:at + 1 + seed % 64] = bytes(len(d[at:at + 1 + seed % 64]))
    else:
        g = torch.Generator().manual_seed(seed)
        for i in torch.randint(0, len(d), (1 + seed % 12,), generator=g).tolist():
            d[i] ^= 1 + (i * 7 + seed) % 255
    return bytes(d)


def _error_names(err: SpeechUnitsError, path: Path, cls: type) -> None:
    assert isinstance(err, cls), repr(err)
    assert str(path) in str(err), str(err)


def check_checkpoint(path: Path) -> None:
    try:
        state = load_checkpoint(path)
    except SpeechUnitsError as err:
        _error_names(err, path, CheckpointError)
        return
    assert isinstance(state, dict) and state["format"] in READABLE_FORMATS
    assert all(k in state for k in REQUIRED_KEYS)


def check_encoder(path: Path) -> None:
    try:
        model = load_encoder(path)
    except SpeechUnitsError as err:
        _error_names(err, path, CheckpointError)
        return
    assert isinstance(model, SpeechEncoder) and not model.training


def _fresh(tmp: Path, name: str) -> Path:
    d = tmp / f"case{next(_counter)}"
    d.mkdir()
    return d / name


@pytest.mark.timeout(60)
@_fuzz(60)
@given(mutation=BYTE_MUTATION)
def test_fuzz_damaged_training_checkpoint_bytes(valid, mutation) -> None:
    tmp, train, _, _ = valid
    path = _fresh(tmp, "step_00000002.pt")
    path.write_bytes(damage_bytes(train, *mutation))
    check_checkpoint(path)


@pytest.mark.timeout(60)
@_fuzz(60)
@given(mutation=BYTE_MUTATION)
def test_fuzz_damaged_encoder_bytes(valid, mutation) -> None:
    tmp, _, enc, _ = valid
    path = _fresh(tmp, "encoder.pt")
    path.write_bytes(damage_bytes(enc, *mutation))
    check_encoder(path)


NON_DICTS = st.sampled_from([None, 3, "format", [1, 2], (torch.zeros(2),), torch.zeros(3), b"\x00"])
PAYLOAD_MUTATION = st.one_of(
    st.tuples(st.just("non_dict"), NON_DICTS),
    st.tuples(st.just("drop_key"), st.integers(0, 100)),
    st.tuples(st.just("rename_key"), st.integers(0, 100)),
    st.tuples(st.just("extra_key"), st.sampled_from(["junk", "state_dict.x", 7])),
    st.tuples(st.just("format"), st.sampled_from([None, "speechunits.train/9", 2, "speechunits.encoder/0", ""])),
    st.tuples(st.just("shape"), st.integers(0, 1000)),
    st.tuples(st.just("value_type"), st.integers(0, 1000)),
    st.tuples(st.just("sd_rename"), st.integers(0, 1000)),
)


def damage_payload(payload: dict, kind: str, arg) -> object:
    """A copy of ``payload`` with one structural defect (top-level key, or inside its state dict)."""
    if kind == "non_dict":
        return arg
    p = dict(payload)
    keys = sorted(p, key=str)
    if kind == "drop_key":
        p.pop(keys[arg % len(keys)])
    elif kind == "rename_key":
        k = keys[arg % len(keys)]
        p[f"{k}_renamed"] = p.pop(k)
    elif kind == "extra_key":
        p[arg] = torch.ones(2)
    elif kind == "format":
        p["format"] = arg
    else:  # shape / value_type / sd_rename: one tensor of the (encoder or trained) state dict
        sd_key = "state_dict" if "state_dict" in p else "model"
        sd = dict(p[sd_key])
        name = sorted(sd)[arg % len(sd)]
        if kind == "sd_rename":
            sd["x" + name] = sd.pop(name)
        else:
            sd[name] = torch.zeros(*(s + 1 for s in sd[name].shape), 2) if kind == "shape" else [1.0, 2.0]
        p[sd_key] = sd
    return p


@pytest.mark.timeout(60)
@_fuzz(40)
@given(mutation=PAYLOAD_MUTATION)
def test_fuzz_damaged_training_checkpoint_payload(valid, mutation) -> None:
    tmp, _, _, _ = valid
    path = _fresh(tmp, "step_00000002.pt")
    save_torch_file(path, damage_payload(train_state(2), *mutation))
    check_checkpoint(path)


@pytest.mark.timeout(60)
@_fuzz(40)
@given(mutation=PAYLOAD_MUTATION)
def test_fuzz_damaged_encoder_payload(valid, mutation) -> None:
    tmp, _, _, payload = valid
    path = _fresh(tmp, "encoder.pt")
    torch.save(damage_payload(payload, *mutation), path)
    check_encoder(path)


@pytest.mark.timeout(60)
@_fuzz(30)
@given(mutation=BYTE_MUTATION)
def test_fuzz_load_latest_valid_skips_damaged_newest(valid, mutation) -> None:
    tmp, train, _, _ = valid
    run = tmp / f"run{next(_counter)}"
    good = checkpoint_path(run, 1)
    good.parent.mkdir(parents=True)
    good.write_bytes(train)
    newest = checkpoint_path(run, 2)
    newest.write_bytes(damage_bytes(save_checkpoint(newest, train_state(2)).read_bytes(), *mutation))
    try:
        load_checkpoint(newest)
        newest_ok = True
    except CheckpointError:
        newest_ok = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load_latest_valid(run)
    assert found is not None
    path, state = found
    if newest_ok:
        assert path == newest and state["format"] in READABLE_FORMATS
    else:
        assert path == good and state["step"] == 1
        assert any(str(newest) in str(w.message) for w in caught)


@pytest.mark.parametrize("size", [0, 1, 22, 100])
def test_truncated_newest_checkpoint_is_skipped(valid, size: int) -> None:
    tmp, train, _, _ = valid
    run = tmp / f"trunc{size}"
    checkpoint_path(run, 1).parent.mkdir(parents=True)
    checkpoint_path(run, 1).write_bytes(train)
    checkpoint_path(run, 2).write_bytes(train[:size])
    with pytest.warns(UserWarning, match="step_00000002"):
        path, state = load_latest_valid(run)
    assert path == checkpoint_path(run, 1) and state["step"] == 1


def test_only_damaged_checkpoints_raise_naming_the_directory(valid) -> None:
    tmp, train, _, _ = valid
    run = tmp / "all_bad"
    checkpoint_path(run, 1).parent.mkdir(parents=True)
    checkpoint_path(run, 1).write_bytes(train[: len(train) // 2])
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        load_latest_valid(run)
    assert "all_bad" in str(err.value)
