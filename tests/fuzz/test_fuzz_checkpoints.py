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
previous valid one. A bit flipped inside a tensor's stored bytes (which ``torch.load`` does not
notice) must always raise CheckpointError naming the damaged zip member (its CRC-32 fails).
Deterministic (``derandomize=True``): 60 byte-level cases per reader (load_checkpoint,
load_encoder), 40 payload cases per reader, 30 load_latest_valid cases and 30 tensor-byte flips
per reader (load_checkpoint, load_encoder) = 290 generated cases, plus explicit tests; about
10 s on one core.
"""

from __future__ import annotations

import itertools
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import CheckpointError, SpeechUnitsError
from speechunits.train.checkpoint import (FORMAT, READABLE_FORMATS, REQUIRED_KEYS, OptimizerState, checkpoint_path,
                                          load_checkpoint, load_latest_valid, load_torch_file, pack_trained_state,
                                          save_checkpoint, save_torch_file)
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


# ----------------------------------------------------------------------------- tensor bytes


def tensor_members(data: bytes) -> list[tuple[str, int, int]]:
    """(name, first byte, size) of every tensor storage (``<archive>/data/<key>``) of a torch zip file."""
    import io

    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
                out.append((info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size))
    return out


def flip_tensor_byte(data: bytes, member: int, frac: float, bit: int) -> tuple[bytes, str]:
    """``data`` with one bit flipped inside a tensor's stored bytes, and that member's name."""
    name, start, size = tensor_members(data)[member % len(tensor_members(data))]
    d = bytearray(data)
    d[start + min(int(frac * size), size - 1)] ^= 1 << bit
    return bytes(d), name


TENSOR_FLIP = st.tuples(st.integers(0, 1000), st.floats(0.0, 1.0, allow_nan=False), st.integers(0, 7))


def _damaged_member(err: CheckpointError, path: Path, member: str) -> None:
    assert isinstance(err, CheckpointError), repr(err)
    assert str(path) in str(err) and repr(member) in str(err) and "CRC-32" in str(err), str(err)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["training checkpoint", "encoder"])
@_fuzz(30)
@given(flip=TENSOR_FLIP)
def test_fuzz_flipped_tensor_byte(valid, which: str, flip) -> None:
    tmp, train, enc, _ = valid
    name, valid_bytes, load = {"training checkpoint": ("step_00000002.pt", train, load_checkpoint),
                               "encoder": ("encoder.pt", enc, load_encoder)}[which]
    path = _fresh(tmp, name)
    data, member = flip_tensor_byte(valid_bytes, *flip)
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        load(path)
    _damaged_member(err.value, path, member)


def test_regression_flipped_tensor_byte_loaded_silently(valid) -> None:
    """torch.load does not check the zip members' CRC-32: a checkpoint with one bit flipped in a
    weight loaded as a different model. load_checkpoint now fails naming the damaged member, and
    load_latest_valid falls back to the previous checkpoint."""
    tmp, train, _, _ = valid
    run = tmp / "flipped"
    checkpoint_path(run, 1).parent.mkdir(parents=True)
    checkpoint_path(run, 1).write_bytes(train)
    newest = save_checkpoint(checkpoint_path(run, 2), train_state(2))
    data, member = flip_tensor_byte(newest.read_bytes(), 0, 0.5, 6)
    newest.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: damaged speechunits training checkpoint: member "
                                              + repr(member) + " does not match its CRC-32"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="CRC-32"):
        path, state = load_latest_valid(run)
    assert path == checkpoint_path(run, 1) and state["step"] == 1


def test_crc_check_spares_legacy_and_unchecksummed_files(tmp_path: Path) -> None:
    """Legacy (non-zip) torch files and zip files written with compute_crc32 off (CRC 0) carry no
    checksum to verify: they load as before."""
    state = train_state(3)
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert not legacy.read_bytes().startswith(b"PK")
    assert load_checkpoint(legacy)["step"] == 3
    config = torch.utils.serialization.config.save
    before = config.compute_crc32
    config.compute_crc32 = False
    try:
        save_torch_file(tmp_path / "nocrc.pt", state)
    finally:
        config.compute_crc32 = before
    assert all(i.CRC == 0 for i in zipfile.ZipFile(tmp_path / "nocrc.pt").infolist())
    assert load_torch_file(tmp_path / "nocrc.pt", READABLE_FORMATS, "checkpoint")["step"] == 3


def test_crc_check_leaves_missing_files_to_the_loader(tmp_path: Path) -> None:
    """check_torch_zip returns quietly for a missing or non-zip file; the loaders report it."""
    from speechunits.train.checkpoint import check_torch_zip

    check_torch_zip(tmp_path / "absent.pt", "checkpoint")
    with pytest.raises(CheckpointError, match="absent.pt"):
        load_encoder(tmp_path / "absent.pt")
    (tmp_path / "text.pt").write_text("not a zip")
    check_torch_zip(tmp_path / "text.pt", "checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pt: truncated or unreadable"):
        load_checkpoint(tmp_path / "text.pt")
