"""Fuzzing of the corpus-manifest readers: JSONL manifests and Kaldi data dirs (issue 17, text readers).

Property: every input either loads, with one utterance per non-blank line (no corrupted line
dropped silently), or raises :class:`ManifestError` whose message names the file (and the line,
when the error has one). Never another exception type, never a hang.

Cases (hypothesis, derandomized): 400 mutated JSONL manifests, 100 generated JSONL files, 400
mutated Kaldi data dirs (one of wav.scp / text / utt2spk / spk2utt / utt2dur / utt2intent
corrupted), 100 generated wav.scp files: 1000 in all, plus the valid-input and regression tests
below.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from mutations import check_names_file, fuzz_settings, mutated, nonblank_lines  # noqa: E402

from speechunits.data.jsonl import load_manifest, read_json_file, write_jsonl_manifest  # noqa: E402
from speechunits.data.kaldi import write_kaldi_dir  # noqa: E402
from speechunits.data.utterance import Utterance  # noqa: E402
from speechunits.errors import ManifestError  # noqa: E402

FUZZ = fuzz_settings(400, 2000, HealthCheck.data_too_large)
GEN = settings(FUZZ, max_examples=100)


def _utts() -> list[Utterance]:
    return [
        Utterance(id=f"spk{i % 2}-utt{i}", audio=f"/data/wav/{i}.wav", text=f"word {i}  two", speaker=f"spk{i % 2}",
                  num_samples=16000 + i, sample_rate=16000, duration=1.0 + i / 10, extra={"intent": f"in{i}"})
        for i in range(5)
    ]


def _valid_jsonl() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        write_jsonl_manifest(_utts(), path)
        return path.read_bytes()


def _valid_kaldi() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        write_kaldi_dir(_utts(), Path(tmp) / "d")
        return {p.name: p.read_bytes() for p in sorted((Path(tmp) / "d").iterdir())}


VALID_JSONL = _valid_jsonl()
VALID_KALDI = _valid_kaldi()


def _check_error(err: BaseException, inside: Path) -> None:
    check_names_file(err, inside, ManifestError)


def _load_jsonl(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        path.write_bytes(data)
        try:
            utts = load_manifest(path, require_text=False)
        except ManifestError as err:
            _check_error(err, path)
            return
        assert len(utts) == nonblank_lines(data), "a non-blank line was dropped silently"


def _load_kaldi(files: dict[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "d"
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        try:
            utts = load_manifest(root)
        except ManifestError as err:
            _check_error(err, root)
            return
        wav_lines = files["wav.scp"].decode("utf-8").split("\n")
        assert len(utts) == len(wav_lines) - (wav_lines[-1] == ""), "a wav.scp line was dropped silently"
        assert "text" not in files or all(u.text is not None for u in utts)
        assert "utt2spk" not in files or all(u.speaker for u in utts)
        for name, attr in (("utt2dur", "duration"), ("utt2intent", "extra")):
            if name not in files:  # a generated wav.scp comes alone
                continue
            lines = files[name].decode("utf-8").split("\n")
            filled = sum(1 for u in utts if (u.extra.get("intent") is not None if attr == "extra" else u.duration is not None))
            assert filled == len(lines) - (lines[-1] == ""), f"a line of {name} was dropped silently"
    finally:
        shutil.rmtree(tmp)


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID_JSONL))
def test_mutated_jsonl_manifest(data: bytes) -> None:
    _load_jsonl(data)


@pytest.mark.timeout(60)
@GEN
@given(lines=st.lists(st.text(max_size=40) | st.sampled_from(['{"id": "a", "audio": "x"}', '{"id": "b"}', "[]", "{}"]),
                      max_size=6))
def test_generated_jsonl_manifest(lines: list[str]) -> None:
    _load_jsonl("\n".join(lines).encode("utf-8", "surrogatepass"))


@pytest.mark.timeout(60)
@FUZZ
@given(name=st.sampled_from(sorted(VALID_KALDI)), data=st.data())
def test_mutated_kaldi_dir(name: str, data: st.DataObject) -> None:
    files = dict(VALID_KALDI)
    files[name] = data.draw(mutated(VALID_KALDI[name]))
    _load_kaldi(files)


@pytest.mark.timeout(60)
@GEN
@given(wav=st.binary(max_size=60) | st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_generated_wav_scp(wav: bytes) -> None:
    _load_kaldi({"wav.scp": wav})


def test_valid_inputs_load(tmp_path: Path) -> None:
    """The unmutated files load whole (the fuzz property is not vacuous)."""
    (tmp_path / "m.jsonl").write_bytes(VALID_JSONL)
    assert len(load_manifest(tmp_path / "m.jsonl")) == 5
    (tmp_path / "d").mkdir()
    for name, data in VALID_KALDI.items():
        (tmp_path / "d" / name).write_bytes(data)
    utts = load_manifest(tmp_path / "d")
    assert len(utts) == 5 and all(u.extra.get("intent") and u.duration for u in utts)


# ----------------------------------------------------------------------------- regressions


def test_regression_jsonl_huge_integer(tmp_path: Path) -> None:
    """An integer over Python's 4300-digit limit raised a raw ValueError from json.loads."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "audio": "/x.wav"}\n{"id": "b", "audio": "/y.wav", "num_samples": ' + "1" * 5000 + "}\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON"):
        load_manifest(path, require_text=False)


def test_regression_jsonl_deep_nesting(tmp_path: Path) -> None:
    """Deeply nested brackets raised a raw RecursionError from json.loads."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "audio": "/x.wav"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON"):
        load_manifest(path, require_text=False)


def test_regression_read_json_file_bad_bytes(tmp_path: Path) -> None:
    """read_json_file let UnicodeDecodeError and the digit-limit ValueError escape."""
    path = tmp_path / "r.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ManifestError, match="r.json: expected UTF-8"):
        read_json_file(path, "missing")
    path.write_text('{"a": ' + "7" * 5000 + "}")
    with pytest.raises(ManifestError, match="r.json: invalid JSON"):
        read_json_file(path, "missing")


def test_regression_spk2utt_not_utf8(tmp_path: Path) -> None:
    """A non-UTF-8 spk2utt raised a raw UnicodeDecodeError (the other Kaldi files raised ManifestError)."""
    root = tmp_path / "d"
    write_kaldi_dir(_utts(), root)
    (root / "spk2utt").write_bytes((root / "spk2utt").read_bytes() + b"spk9 \xff\n")
    with pytest.raises(ManifestError, match="spk2utt: expected UTF-8"):
        load_manifest(root)



@pytest.mark.parametrize("field,value", [("duration", "NaN"), ("duration", "-Infinity"), ("duration", "-1.5"),
                                         ("num_samples", str(10**400)), ("sample_rate", "-16000")])
def test_regression_jsonl_numbers_as_kaldi(tmp_path: Path, field: str, value: str) -> None:
    """A JSONL manifest accepted NaN / infinite / negative / over-64-bit lengths that the Kaldi reader
    rejects (and 10**400 samples overflowed float conversion downstream)."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "audio": "/x.wav"}\n{"id": "b", "audio": "/y.wav", "%s": %s}\n' % (field, value))
    with pytest.raises(ManifestError, match=rf"m\.jsonl:2: field '{field}' must be a finite non-negative"):
        load_manifest(path, require_text=False)


@pytest.mark.parametrize("value", [str(2**63), "9" * 400, "nan", "inf", "-1"])
def test_regression_kaldi_num_samples_64_bits(tmp_path: Path, value: str) -> None:
    """utt2num_samples accepted integers beyond 64 bits (a JSONL manifest now rejects them too)."""
    root = tmp_path / "d"
    write_kaldi_dir(_utts(), root)
    lines = (root / "utt2num_samples").read_text().split("\n")
    lines[2] = lines[2].split(" ")[0] + " " + value
    (root / "utt2num_samples").write_text("\n".join(lines))
    with pytest.raises(ManifestError, match=r"utt2num_samples:3: .*expected a"):
        load_manifest(root)
