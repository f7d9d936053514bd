"""Fuzzing of the embedding readers of a unit set: ``embeddings/index.json`` and the float16
``embeddings/shard.J.npy`` shards, read through :func:`read_embeddings`, :func:`iter_embeddings`,
:class:`EmbeddingStore` (with meta.json's ``embedding_dim``) and :func:`validate_unit_set`
(issue 17, binary readers).

The valid set is written by the project's writers: two jobs of :class:`UnitSetWriter` (3
utterances each, ``embedding_dim`` 4) joined by :func:`merge_shards`, so the index points into two
shards. Property: every input either loads, each utterance's rows a 2-D float16 array of
``embedding_dim`` columns holding one finite row per token of its ``units.jsonl`` record, or
raises :class:`UnitFormatError` whose message names a file of the set (and the line, when the
error has one). Never another exception type, never a hang.

Cases (hypothesis, derandomized): 200 mutated ``index.json`` (text mutations), 150 ``index.json``
with one generated entry (JSON values, rows out of range, foreign shard names), 150 shards
damaged at the byte level (truncated, header or data bytes flipped, zeroed runs) and 100 shards
rewritten as another array (wrong dtype or byte order, 1-D / 3-D, wrong dim, fewer or more rows,
Fortran order, non-finite values, an object array): 600 in all, each read the four ways, plus
the valid-input and regression tests below.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from mutations import JSON_VALUES, check_names_file, fuzz_settings, mutated  # noqa: E402

from speechunits.errors import UnitFormatError  # noqa: E402
from speechunits.units import EmbeddingStore, iter_embeddings, read_embeddings  # noqa: E402
from speechunits.units.embeddings import EMB_DIR, INDEX_NAME  # noqa: E402
from speechunits.units.meta import META_NAME, UNITS_NAME, read_meta  # noqa: E402
from speechunits.units.reader import read_units  # noqa: E402
from speechunits.units.validate import validate_unit_set  # noqa: E402
from speechunits.units.writer import UnitSetWriter, merge_shards  # noqa: E402

FUZZ = fuzz_settings(200, 3000, HealthCheck.data_too_large)
GEN = settings(FUZZ, max_examples=150)
BYTES = settings(FUZZ, max_examples=150)
ARRAYS = settings(FUZZ, max_examples=100)
DIM = 4


def _valid_set() -> dict[str, bytes]:
    """Every file of a merged two-job unit set with embeddings, by path relative to the set."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u"
        rng = np.random.default_rng(0)
        for job, ids in enumerate((["a0", "a1", "a2"], ["b0", "b1", "b2"])):
            with UnitSetWriter(out, kind="fuzz", sample_rate=16000, hop=320, job=job, nj=2, embedding_dim=DIM,
                               vocab_size=10) as w:
                for n, utt in enumerate(ids):
                    tokens = n + 1  # 1, 2, 3 tokens
                    bounds = list(range(0, 10 * (tokens + 1), 10))
                    w.add(id=utt, audio=f"/wav/{utt}.wav", num_samples=16000, sample_rate=16000, starts=bounds[:-1],
                          ends=bounds[1:], units=list(range(tokens)),
                          embeddings=rng.standard_normal((tokens, DIM)).astype(np.float32))
        merge_shards(out, 2)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


VALID = _valid_set()
INDEX = f"{EMB_DIR}/{INDEX_NAME}"
SHARDS = sorted(name for name in VALID if name.endswith(".npy"))
TOKENS = {"a0": 1, "a1": 2, "a2": 3, "b0": 1, "b1": 2, "b2": 3}


def _check_error(err: BaseException, root: Path) -> None:
    check_names_file(err, root, UnitFormatError)


def _check_rows(utt: str, rows: np.ndarray) -> None:
    assert rows.dtype == np.float16 and rows.ndim == 2 and rows.shape[1] == DIM, (utt, rows.dtype, rows.shape)


def _read_all(root: Path) -> None:
    """The four public ways in; each either succeeds (checked) or raises a UnitFormatError naming a file."""

    def by_id() -> None:
        for utt in TOKENS:
            _check_rows(utt, read_embeddings(root, utt))

    def iterate() -> None:
        for utt, rows in iter_embeddings(root):
            _check_rows(utt, rows)

    def store() -> None:
        s = EmbeddingStore(root, read_meta(root).embedding_dim)
        for utt, rows in s:
            _check_rows(utt, rows)

    def validate() -> None:
        report = validate_unit_set(root)
        assert report.has_embeddings and report.num_utterances == len(TOKENS)
        for rec in read_units(root):
            rows = read_embeddings(root, rec.id)
            _check_rows(rec.id, rows)
            assert rows.shape[0] == rec.num_tokens == TOKENS[rec.id], (rec.id, rows.shape)
            assert np.isfinite(rows).all(), f"validate_unit_set accepted non-finite embeddings of {rec.id!r}"

    for reader in (by_id, iterate, store, validate):
        try:
            reader()
        except UnitFormatError as err:
            _check_error(err, root)


def _load(changed: dict[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "u"
        for name, data in {**VALID, **changed}.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        _read_all(root)
    finally:
        shutil.rmtree(tmp)


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID[INDEX]))
def test_mutated_index_json(data: bytes) -> None:
    _load({INDEX: data})


ENTRY = (JSON_VALUES
         | st.tuples(st.sampled_from(SHARDS + ["shard.7.npy", "../meta.json", "/etc/passwd", "", "embeddings/shard.0.npy",
                                               "index.json", "shard.0.npy\x00"]),
                     st.sampled_from([0, 1, 2, 5, 6, -1, 2**63, 10**30, True, 1.0]),
                     st.sampled_from([0, 1, 3, 5, 6, 7, 2**64, True, 3.0, None])).map(list))


@pytest.mark.timeout(60)
@GEN
@given(utt=st.sampled_from(sorted(TOKENS) + ["zz", ""]), entry=ENTRY, drop=st.booleans())
def test_generated_index_entry(utt: str, entry: object, drop: bool) -> None:
    index = json.loads(VALID[INDEX])
    index[utt] = entry
    if drop:
        index.pop(sorted(TOKENS)[len(json.dumps(entry)) % len(TOKENS)], None)
    _load({INDEX: json.dumps(index).encode()})


@pytest.mark.timeout(60)
@BYTES
@given(name=st.sampled_from(SHARDS), kind=st.sampled_from(["truncate", "flip_header", "flip_data", "zero_run"]),
       at=st.floats(0.0, 1.0, allow_nan=False), seed=st.integers(0, 2**31 - 1))
def test_damaged_shard_bytes(name: str, kind: str, at: float, seed: int) -> None:
    data = bytearray(VALID[name])
    header = 128  # numpy writes a 128-byte version-1.0 header for these small shards
    if kind == "truncate":
        data = data[: int(at * (len(data) - 1))]
    elif kind == "flip_header":
        data[int(at * (header - 1))] ^= 1 + seed % 255
    elif kind == "flip_data":
        data[header + int(at * (len(data) - header - 1))] ^= 1 << (seed % 8)
    else:
        i = int(at * (len(data) - 1))
        data[i: i + 1 + seed % 64] = bytes(len(data[i: i + 1 + seed % 64]))
    _load({name: bytes(data)})


def _npy(arr: np.ndarray) -> bytes:
    with tempfile.TemporaryFile() as f:
        np.save(f, arr, allow_pickle=True)
        f.seek(0)
        return f.read()


@st.composite
def wrong_array(draw: st.DrawFn, name: str) -> bytes:
    """The shard ``name`` rewritten as another array."""
    good = np.load(__import__("io").BytesIO(VALID[name]))
    kind = draw(st.sampled_from(["dtype", "big_endian", "flat", "3d", "dim", "rows", "fortran", "non_finite", "object",
                                 "empty"]))
    if kind == "dtype":
        return _npy(good.astype(draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_]))))
    if kind == "big_endian":
        return _npy(good.astype(">f2"))
    if kind == "flat":
        return _npy(good.reshape(-1))
    if kind == "3d":
        return _npy(good.reshape(good.shape[0], 2, -1))
    if kind == "dim":
        return _npy(np.zeros((good.shape[0], draw(st.sampled_from([0, 1, 3, 5, 8]))), dtype=np.float16))
    if kind == "rows":
        return _npy(np.zeros((draw(st.sampled_from([0, 1, 5, 7, 100])), DIM), dtype=np.float16))
    if kind == "fortran":
        return _npy(np.asfortranarray(good))
    if kind == "non_finite":
        bad = good.copy()
        bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return _npy(bad)
    if kind == "object":
        return _npy(np.array([[None] * DIM] * good.shape[0], dtype=object))
    return _npy(np.zeros((0, DIM), dtype=np.float16))


@pytest.mark.timeout(60)
@ARRAYS
@given(name=st.sampled_from(SHARDS), data=st.data())
def test_wrong_shard_array(name: str, data: st.DataObject) -> None:
    _load({name: data.draw(wrong_array(name))})


def test_valid_inputs_load(tmp_path: Path) -> None:
    """The unmutated set loads whole through every reader (the fuzz property is not vacuous)."""
    root = tmp_path / "u"
    for name, data in VALID.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    assert SHARDS == ["embeddings/shard.0.npy", "embeddings/shard.1.npy"]
    assert {u: v[0] for u, v in json.loads(VALID[INDEX]).items()} == {u: f"shard.{int(u[0] == 'b')}.npy" for u in TOKENS}
    assert validate_unit_set(root).has_embeddings
    assert {u: rows.shape for u, rows in iter_embeddings(root)} == {u: (n, DIM) for u, n in TOKENS.items()}
    assert read_embeddings(root, "b2").shape == (3, DIM) and len(EmbeddingStore(root, DIM)) == 6


# ----------------------------------------------------------------------------- regressions


def _valid_dir(tmp_path: Path) -> Path:
    root = tmp_path / "u"
    for name, data in VALID.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_regression_damaged_npy_header_token_error(tmp_path: Path) -> None:
    """A zeroed byte in a shard's header made numpy raise a raw tokenize.TokenError (or SyntaxError)
    (open_shard caught only ValueError/OSError/EOFError)."""
    root = _valid_dir(tmp_path)
    shard = root / SHARDS[0]
    data = bytearray(shard.read_bytes())
    data[10] = 0  # the "{" opening the header dict
    shard.write_bytes(bytes(data))
    for read in (lambda: read_embeddings(root, "a0"), lambda: list(iter_embeddings(root)),
                 lambda: validate_unit_set(root)):
        with pytest.raises(UnitFormatError, match=r"shard\.0\.npy: unreadable or truncated embeddings shard"):
            read()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_regression_validate_rejects_non_finite_embeddings(tmp_path: Path, value: float) -> None:
    """validate_unit_set accepted a shard holding NaN / inf rows, which the writer refuses
    (a flipped exponent bit in a shard's data makes them)."""
    root = _valid_dir(tmp_path)
    shard = root / SHARDS[1]
    arr = np.load(shard)
    arr[4, 2] = value  # b2's rows are 3..5
    np.save(shard, arr)
    with pytest.raises(UnitFormatError, match=r"shard\.1\.npy: utterance 'b2': non-finite embedding in row 4"):
        validate_unit_set(root)


def test_regression_readers_check_the_declared_dim(tmp_path: Path) -> None:
    """read_embeddings and iter_embeddings returned rows of a shard whose dim differs from
    meta.json's embedding_dim (only EmbeddingStore(dir, dim) and validate_unit_set checked it)."""
    root = _valid_dir(tmp_path)
    np.save(root / SHARDS[0], np.zeros((6, DIM + 1), dtype=np.float16))
    with pytest.raises(UnitFormatError, match=r"shard\.0\.npy: embeddings shard has dim 5, meta.json says embedding_dim 4"):
        read_embeddings(root, "a1")
    with pytest.raises(UnitFormatError, match=r"shard\.0\.npy: embeddings shard has dim 5"):
        list(iter_embeddings(root))
