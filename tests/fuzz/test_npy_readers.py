"""The ``.npy`` readers other than the embedding shards' (F0 tracks, ``.npy`` segment arrays, a
packed LM set's offsets) on damaged files: each raises its own error naming the file, never
numpy's ``tokenize.TokenError`` / ``SyntaxError`` of a damaged header (found by the embeddings
fuzzing, tests/fuzz/test_fuzz_embeddings.py; all four now read through ``io_utils.load_npy``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from speechunits.data.utterance import Utterance
from speechunits.errors import DataError, SpeechUnitsError, UnitFormatError
from speechunits.features.f0_store import read_f0
from speechunits.lm.packed import PackedTokens, packed_files, write_packed
from speechunits.sylber.segment_sources import FileSegmentSource


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "header":
        data[10] = 0  # the "{" opening the header dict: numpy raises tokenize.TokenError / SyntaxError
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) - 3]))


def _f0(tmp: Path) -> tuple[Path, Callable[[], object], type[SpeechUnitsError]]:
    path = tmp / "u.npy"
    np.save(path, np.full(20, 120.0, dtype=np.float32))
    return path, lambda: read_f0(path), DataError


def _segments(tmp: Path) -> tuple[Path, Callable[[], object], type[SpeechUnitsError]]:
    path = tmp / "segs" / "u.npy"
    path.parent.mkdir()
    np.save(path, np.array([[0, 5], [5, 9]], dtype=np.int64))
    source = FileSegmentSource(tmp / "segs", kind="npy")
    return path, lambda: source.segments(Utterance(id="u", audio="u.wav")), UnitFormatError


def _packed(tmp: Path) -> tuple[Path, Callable[[], object], type[SpeechUnitsError]]:
    prefix = tmp / "lm" / "train"
    write_packed(prefix, ["a", "b"], [np.arange(4), np.arange(3)], [0.5, 0.4], vocab_size=8, producer={})
    return packed_files(prefix)["idx"], lambda: PackedTokens(prefix), UnitFormatError


@pytest.mark.parametrize("how", ["header", "truncated"])
@pytest.mark.parametrize("reader", [_f0, _segments, _packed], ids=["f0", "npy-segments", "packed-offsets"])
def test_damaged_npy_is_the_readers_error_naming_the_file(reader, how: str, tmp_path: Path) -> None:
    path, read, error = reader(tmp_path)
    read()  # the valid file loads
    _damage(path, how)
    with pytest.raises(error, match=rf"^{path}: unreadable or truncated "):
        read()
