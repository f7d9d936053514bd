"""Fuzzing of the unit-set readers: ``meta.json`` (read_meta), ``units.jsonl`` (read_units) and
validate_unit_set (issue 17, text readers).

Property: every input either loads, with one record per line of ``units.jsonl`` (no corrupted
line dropped silently), or raises :class:`UnitFormatError` whose message names the file (and
the line, for ``units.jsonl``). Never another exception type, never a hang.

Cases (hypothesis, derandomized): 600 mutated ``units.jsonl``, 400 mutated ``meta.json``, 100
generated ``units.jsonl`` and 100 ``meta.json`` with one generated value: 1200 in all (each read
three ways: read_units, read_units(validate=False), validate_unit_set), plus the valid-input and
regression tests below.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from mutations import JSON_VALUES, check_names_file, fuzz_settings, mutated  # noqa: E402

from speechunits.errors import UnitFormatError  # noqa: E402
from speechunits.units.meta import META_NAME, UNITS_NAME, read_meta  # noqa: E402
from speechunits.units.reader import read_units  # noqa: E402
from speechunits.units.record import UnitRecord  # noqa: E402
from speechunits.units.validate import validate_unit_set  # noqa: E402
from speechunits.units.writer import write_unit_set  # noqa: E402

FUZZ = fuzz_settings(600, 2000, HealthCheck.data_too_large)
META_FUZZ = settings(FUZZ, max_examples=400)
GEN = settings(FUZZ, max_examples=100)


def _records() -> list[UnitRecord]:
    return [
        UnitRecord(id=f"utt{i}", audio=f"wav/{i}.wav", num_samples=16000, sample_rate=16000,
                   starts=[0, 10, 25], ends=[10, 25, 50], units=[i, 3, 99], speaker="s1", text=f"text {i}",
                   f0=[100.0, 110.5, 0.0])
        for i in range(5)
    ]


def _valid_set() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u"
        write_unit_set(out, _records(), kind="fuzz", sample_rate=16000, hop=320, vocab_size=100,
                       producer={"name": "fuzz"}, special_ids={"pad": 0})
        return {name: (out / name).read_bytes() for name in (META_NAME, UNITS_NAME)}


VALID = _valid_set()


def _check_error(err: UnitFormatError, root: Path, *, lined: bool) -> None:
    check_names_file(err, root, UnitFormatError)
    if err.line is None and lined and err.path.name == UNITS_NAME:
        # a units.jsonl error without a line is about the file as a whole (counts, missing file)
        assert "units" in str(err) or "holds" in str(err), err


def _load(files: dict[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "u"
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        lines = None
        for reader in (lambda: list(read_units(root)), lambda: list(read_units(root, validate=False)),
                       lambda: validate_unit_set(root)):
            try:
                result = reader()
            except UnitFormatError as err:
                _check_error(err, root, lined=True)
                continue
            if isinstance(result, list):
                text = files[UNITS_NAME].decode("utf-8")
                lines = text.split("\n")
                expected = len(lines) - (lines[-1] == "")
                assert len(result) == expected, "a units.jsonl line was dropped silently"
            else:
                assert result.num_utterances == len(list(read_units(root))), "validate counted differently"
    finally:
        shutil.rmtree(tmp)


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID[UNITS_NAME]))
def test_mutated_units_jsonl(data: bytes) -> None:
    _load({META_NAME: VALID[META_NAME], UNITS_NAME: data})


@pytest.mark.timeout(60)
@META_FUZZ
@given(data=mutated(VALID[META_NAME]))
def test_mutated_meta_json(data: bytes) -> None:
    _load({META_NAME: data, UNITS_NAME: VALID[UNITS_NAME]})


@pytest.mark.timeout(60)
@GEN
@given(lines=st.lists(JSON_VALUES.map(lambda v: json.dumps(v)) | st.text(max_size=30), min_size=1, max_size=5))
def test_generated_units_jsonl(lines: list[str]) -> None:
    _load({META_NAME: VALID[META_NAME], UNITS_NAME: "\n".join(lines).encode("utf-8", "surrogatepass")})


@pytest.mark.timeout(60)
@GEN
@given(key=st.sampled_from(sorted(json.loads(VALID[META_NAME]))), value=JSON_VALUES)
def test_generated_meta_values(key: str, value: object) -> None:
    meta = json.loads(VALID[META_NAME])
    meta[key] = value
    _load({META_NAME: json.dumps(meta).encode("utf-8", "surrogatepass"), UNITS_NAME: VALID[UNITS_NAME]})


def test_valid_set_loads(tmp_path: Path) -> None:
    """The unmutated unit set loads whole (the fuzz property is not vacuous)."""
    root = tmp_path / "u"
    root.mkdir()
    for name, data in VALID.items():
        (root / name).write_bytes(data)
    assert len(list(read_units(root))) == 5
    assert validate_unit_set(root).num_utterances == 5


# ----------------------------------------------------------------------------- regressions


def _write(tmp_path: Path, meta: bytes, units: bytes) -> Path:
    root = tmp_path / "u"
    root.mkdir()
    (root / META_NAME).write_bytes(meta)
    (root / UNITS_NAME).write_bytes(units)
    return root


def test_regression_units_huge_integer(tmp_path: Path) -> None:
    """A units.jsonl integer over Python's 4300-digit limit raised a raw ValueError."""
    lines = VALID[UNITS_NAME].split(b"\n")
    lines[2] = lines[2].replace(b'"num_samples":16000', b'"num_samples":' + b"1" * 5000)
    root = _write(tmp_path, VALID[META_NAME], b"\n".join(lines))
    with pytest.raises(UnitFormatError, match=r"units\.jsonl:3: invalid JSON"):
        list(read_units(root))


def test_regression_units_deep_nesting(tmp_path: Path) -> None:
    """Deeply nested brackets in units.jsonl raised a raw RecursionError."""
    root = _write(tmp_path, VALID[META_NAME], VALID[UNITS_NAME] + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(UnitFormatError, match=r"units\.jsonl:6: invalid JSON"):
        list(read_units(root, validate=False))


def test_regression_meta_huge_integer(tmp_path: Path) -> None:
    """A meta.json integer over the digit limit raised a raw ValueError."""
    meta = VALID[META_NAME].replace(b'"hop": 320', b'"hop": ' + b"3" * 5000)
    assert meta != VALID[META_NAME]
    root = _write(tmp_path, meta, VALID[UNITS_NAME])
    with pytest.raises(UnitFormatError, match=r"meta\.json: invalid JSON"):
        read_meta(root)


def test_regression_units_integer_beyond_64_bits(tmp_path: Path) -> None:
    """num_samples = 10**400 passed the reader and made validate_unit_set raise OverflowError
    (num_samples / sample_rate); integers must now fit in 64 bits."""
    units = VALID[UNITS_NAME].replace(b'"num_samples":16000', b'"num_samples":' + str(10**400).encode(), 1)
    assert units != VALID[UNITS_NAME]
    root = _write(tmp_path, VALID[META_NAME], units)
    with pytest.raises(UnitFormatError, match=r"units\.jsonl:1: utterance 'utt0': field 'num_samples'"):
        validate_unit_set(root)


def test_regression_meta_integer_beyond_64_bits(tmp_path: Path) -> None:
    """sample_rate = 10**400 (with a matching frame_rate) was accepted, and frame_rate_hz then raised OverflowError."""
    meta = json.loads(VALID[META_NAME])
    meta.update(sample_rate=10**400, hop=1, frame_rate=f"{10**400}/1")
    meta.pop("frame_rate_hz")
    root = _write(tmp_path, json.dumps(meta).encode(), VALID[UNITS_NAME])
    with pytest.raises(UnitFormatError, match=r"meta\.json: 'sample_rate' must be a positive integer"):
        read_meta(root)
