"""Fuzzing of the alignment readers: :func:`read_textgrid` (long and short Praat text formats,
UTF-8 and UTF-16), :func:`read_ctm`, and the readers of a directory of TextGrids
(:class:`FileSegmentSource` ``kind="textgrid"`` and the phone probe's :func:`load_tiers`) and
the boundary evaluation's :func:`read_references` (issue 17, text readers).

Property: every input either loads, with intervals that are finite, contiguous and cover their
tier (TextGrid) or one interval per non-blank, non-comment line (CTM: no corrupted line dropped
silently), or raises :class:`AlignmentError` whose message names the file (and the line, when
the error has one). Never another exception type, never a hang.

Valid files come from the project's writers (:func:`write_textgrid`, :func:`write_ctm`) and by
hand (a short-format TextGrid with a point tier and comments, a UTF-16 MFA-style TextGrid, a CTM
with confidences and ``;;`` comments); they are then mutated (:func:`mutations.mutated`), or
generated. Cases (hypothesis, derandomized): 300 mutated long TextGrids, 200 mutated short
TextGrids, 50 mutated UTF-16 TextGrids, 100 generated TextGrids (every tier read, and one tier
asked for), 300 mutated CTM files, 100 generated CTM files and 100 TextGrid directories with one
mutated file (read through both directory readers and, for each grid, the boundary evaluation's
syllabified phone references :func:`read_references`; the segment source may also refuse a well-formed grid
with times before 0 by :class:`UnitFormatError` naming it): 1150 in all, plus the valid-input and
regression tests below.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import test_alignments  # noqa: E402
from mutations import check_names_file, fuzz_settings, mutated  # noqa: E402

from speechunits.data.alignments import (TOLERANCE, Interval, read_ctm, read_textgrid,  # noqa: E402
                                         textgrid_syllables, write_ctm, write_textgrid)
from speechunits.data.utterance import Utterance  # noqa: E402
from speechunits.errors import AlignmentError, UnitFormatError  # noqa: E402
from speechunits.eval.boundaries_refs import ReferenceSpec, read_references  # noqa: E402
from speechunits.quantize.phone_probe import ProbeSet, load_tiers  # noqa: E402
from speechunits.sylber.segment_sources import FileSegmentSource  # noqa: E402

FUZZ = fuzz_settings(300, 2000, HealthCheck.data_too_large)
SHORT_FUZZ = settings(FUZZ, max_examples=200)
UTF16_FUZZ = settings(FUZZ, max_examples=50)
GEN = settings(FUZZ, max_examples=100)
DIR_FUZZ = settings(FUZZ, max_examples=100)

TIERS = {
    "words": [Interval(0.12, 0.5, "hello"), Interval(0.5, 1.1, 'say "hi"')],
    "syllables": [Interval(0.12, 0.3, "hə"), Interval(0.3, 0.5, "lo"), Interval(0.5, 1.1, "sei")],
    "phones": [Interval(0.12, 0.2, "HH"), Interval(0.2, 0.3, "AH0"), Interval(0.3, 0.4, "L"), Interval(0.4, 0.5, "OW1"),
               Interval(0.5, 0.8, "S"), Interval(0.8, 1.1, "EY1")],
}

# the short-format grid of test_alignments.py, with a "!" comment after a label
SHORT_TEXTGRID = test_alignments.SHORT_TEXTGRID.replace('"h-e-l"\n', '"h-e-l" ! a comment\n')
assert "! a comment" in SHORT_TEXTGRID

CTM = """;; a comment
utt1 1 0.12 0.38 hello 0.93
utt1 1 0.5 0.6 world 1.0
utt2 A 0 0.25 yes

utt2 A 0.25 1e-1 no 0.5
"""


def _valid_long() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.TextGrid"
        write_textgrid(path, TIERS, xmax=1.25)
        return path.read_bytes()


def _valid_ctm() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.ctm"
        write_ctm(path, {"utt1": TIERS["syllables"], "utt2": [Interval(0.0, 0.25, "yes"), Interval(0.25, 0.35, "no")]})
        return path.read_bytes()


VALID_LONG = _valid_long()
VALID_SHORT = SHORT_TEXTGRID.encode("utf-8")
VALID_UTF16 = VALID_LONG.decode("utf-8").encode("utf-16")
VALID_CTMS = (_valid_ctm(), CTM.encode("utf-8"))


def _check_error(err: BaseException, inside: Path) -> None:
    check_names_file(err, inside, AlignmentError)


def _check_tiers(tiers: dict[str, list[Interval]]) -> None:
    """Loaded tiers are finite, ordered and contiguous."""
    for name, ivs in tiers.items():
        assert isinstance(name, str)
        for i, iv in enumerate(ivs):
            assert math.isfinite(iv.start) and math.isfinite(iv.end), (name, iv)
            assert iv.start <= iv.end, (name, iv)
            assert isinstance(iv.label, str)
            if i:
                assert abs(iv.start - ivs[i - 1].end) <= TOLERANCE, (name, iv)


def _load_textgrid(data: bytes, tiers: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.TextGrid"
        path.write_bytes(data)
        try:
            _check_tiers(read_textgrid(path, tiers=tiers, required=False))
        except AlignmentError as err:
            _check_error(err, path)


def _ctm_lines(data: bytes) -> int:
    """Lines of a CTM file that are neither blank nor ``;;`` comments (one interval each)."""
    return sum(1 for line in data.decode("utf-8").split("\n") if line.strip() and not line.strip().startswith(";;"))


def _load_ctm(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.ctm"
        path.write_bytes(data)
        try:
            out = read_ctm(path)
        except AlignmentError as err:
            _check_error(err, path)
            return
        assert sum(len(ivs) for ivs in out.values()) == _ctm_lines(data), "a CTM line was dropped silently"
        for ivs in out.values():
            for iv in ivs:
                assert math.isfinite(iv.start) and math.isfinite(iv.end) and 0 <= iv.start <= iv.end, iv


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(VALID_LONG), tiers=st.sampled_from([None, ["syllables"], ["words", "phones"]]))
def test_mutated_long_textgrid(data: bytes, tiers: list[str] | None) -> None:
    _load_textgrid(data, tiers)


@pytest.mark.timeout(60)
@SHORT_FUZZ
@given(data=mutated(VALID_SHORT), tiers=st.sampled_from([None, ["syllables"]]))
def test_mutated_short_textgrid(data: bytes, tiers: list[str] | None) -> None:
    _load_textgrid(data, tiers)


@pytest.mark.timeout(60)
@UTF16_FUZZ
@given(data=mutated(VALID_UTF16))
def test_mutated_utf16_textgrid(data: bytes) -> None:
    _load_textgrid(data)


NUMBERS = st.sampled_from(["0", "0.5", "1", "1.5", "-1", "1e999", "-1e999", "1e-400", "nan", "inf", ".", "1.2.3",
                           "9" * 400, "2", "0x10", "+0.7", "1e"])
LABELS = st.sampled_from(['""', '"a"', '"say ""hi"""', '"unterminated', '"x\ny"', "bare", "<exists>"])


@st.composite
def generated_textgrid(draw: st.DrawFn) -> bytes:
    """A long- or short-format TextGrid whose counts, times and labels are drawn (often inconsistent)."""
    long = draw(st.booleans())

    def field(name: str, value: str) -> str:
        return f"{name} = {value}" if long else value

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             field("xmin", draw(NUMBERS)), field("xmax", draw(NUMBERS)),
             ("tiers? " if long else "") + draw(st.sampled_from(["<exists>", "<absent>", "<maybe>"])),
             field("size", draw(st.sampled_from(["0", "1", "2", "3", "1.5", "-1", "1e999"])))]
    for t in range(draw(st.integers(0, 2))):
        if long:
            lines.append(f"item [{t + 1}]:")
        lines += [field("class", draw(st.sampled_from(['"IntervalTier"', '"TextTier"', '"Other"']))),
                  field("name", draw(st.sampled_from(['"words"', '"syllables"', '"phones"', '""']))),
                  field("xmin", draw(NUMBERS)), field("xmax", draw(NUMBERS)),
                  field("intervals: size", draw(st.sampled_from(["0", "1", "2", "4", "-2", "1e999", "nan"])))]
        for i in range(draw(st.integers(0, 3))):
            if long:
                lines.append(f"intervals [{i + 1}]:")
            lines += [field("xmin", draw(NUMBERS)), field("xmax", draw(NUMBERS)), field("text", draw(LABELS))]
    return "\n".join(lines).encode("utf-8")


@pytest.mark.timeout(60)
@GEN
@given(data=generated_textgrid(), tiers=st.sampled_from([None, ["syllables"]]))
def test_generated_textgrid(data: bytes, tiers: list[str] | None) -> None:
    _load_textgrid(data, tiers)


@pytest.mark.timeout(60)
@FUZZ
@given(valid=st.sampled_from(VALID_CTMS), data=st.data())
def test_mutated_ctm(valid: bytes, data: st.DataObject) -> None:
    _load_ctm(data.draw(mutated(valid)))


CTM_FIELD = st.sampled_from(["utt1", "1", "A", "0", "0.5", "-0.5", "nan", "inf", "-inf", "1e999", "x", "0x1",
                             "1_000", ";;", "\u00a0", "\x0c", "\u2028", "1e-9"])


@pytest.mark.timeout(60)
@GEN
@given(lines=st.lists(st.lists(CTM_FIELD, min_size=0, max_size=7).map(" ".join) | st.text(max_size=30), max_size=5))
def test_generated_ctm(lines: list[str]) -> None:
    _load_ctm("\n".join(lines).encode("utf-8", "surrogatepass"))


def _grid_dir(grids: dict[str, bytes]) -> Path:
    tmp = Path(tempfile.mkdtemp())
    for name, data in grids.items():
        path = tmp / "aligned" / name[:1] / f"{name}.TextGrid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp


def _read_dir(root: Path, ids: list[str]) -> None:
    utts = [Utterance(id=i, audio=f"/x/{i}.wav") for i in ids]
    source = FileSegmentSource(root, kind="textgrid")
    for utt in utts:
        try:
            segments = source.segments(utt)
        except AlignmentError as err:
            _check_error(err, root)
            continue
        except UnitFormatError as err:  # a well-formed grid whose times are before 0: not usable as frames
            assert str(source._lookup()[utt.id]) in str(err) and "expected 0 <= start < end" in str(err), err
            continue
        assert segments.dtype.kind == "i" and (segments.size == 0 or segments.min() >= 0), segments
    probe = ProbeSet(utts, {u.id: source._lookup()[u.id] for u in utts})
    try:
        _check_tiers(load_tiers(probe, "syllables"))
    except AlignmentError as err:
        _check_error(err, root)
    for utt in utts:
        try:
            refs = read_references(probe.grids[utt.id], ReferenceSpec(syllabify_phones=True), utt.id)
        except AlignmentError as err:
            _check_error(err, root)
            continue
        assert refs.spans.shape == (len(refs.syllables), 2) and np.isfinite(refs.spans).all(), refs


@pytest.mark.timeout(60)
@DIR_FUZZ
@given(which=st.sampled_from(["a1", "b2", "c3"]), data=st.data())
def test_mutated_textgrid_directory(which: str, data: st.DataObject) -> None:
    grids = {"a1": VALID_LONG, "b2": VALID_SHORT, "c3": VALID_UTF16}
    grids[which] = data.draw(mutated(grids[which]))
    tmp = _grid_dir(grids)
    try:
        _read_dir(tmp / "aligned", sorted(grids))
    finally:
        shutil.rmtree(tmp)


def test_valid_inputs_load(tmp_path: Path) -> None:
    """The unmutated files load whole (the fuzz property is not vacuous)."""
    for name, data in (("long", VALID_LONG), ("short", VALID_SHORT), ("utf16", VALID_UTF16)):
        (tmp_path / f"{name}.TextGrid").write_bytes(data)
        tiers = read_textgrid(tmp_path / f"{name}.TextGrid")
        _check_tiers(tiers)
        assert len(tiers["syllables"]) == (3 if name == "short" else 5)  # written grids: gaps filled
    assert [iv.label for iv in textgrid_syllables(tmp_path / "long.TextGrid")] == ["hə", "lo", "sei"]
    for i, data in enumerate(VALID_CTMS):
        (tmp_path / f"{i}.ctm").write_bytes(data)
        out = read_ctm(tmp_path / f"{i}.ctm")
        assert sum(map(len, out.values())) == _ctm_lines(data) == (5 if i == 0 else 4)
    tmp = _grid_dir({"a1": VALID_LONG, "b2": VALID_SHORT, "c3": VALID_UTF16})
    try:
        source = FileSegmentSource(tmp / "aligned", kind="textgrid")
        assert [len(source.segments(Utterance(id=i, audio="/x"))) for i in ("a1", "b2", "c3")] == [3, 2, 3]
        refs = read_references(source._lookup()["a1"], ReferenceSpec(syllabify_phones=True))
        assert refs.used_word_tier and len(refs.syllables) == 3
    finally:
        shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("where", ["size = 3", "intervals: size = 5", "xmax = 1.25"])
def test_regression_textgrid_number_beyond_float_range(tmp_path: Path, where: str) -> None:
    """A count or time with more digits than a float holds parsed as infinity: a count raised a raw
    OverflowError (int(inf)), a time loaded as an infinite interval end."""
    text = VALID_LONG.decode("utf-8")
    name = where.rpartition(" = ")[0]
    assert where in text
    path = tmp_path / "a.TextGrid"
    path.write_text(text.replace(where, f"{name} = {'9' * 400}", 1), encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"a\.TextGrid:\d+: expected a finite number for .*9\.\.\.$"):
        read_textgrid(path)


def test_regression_short_textgrid_infinite_time(tmp_path: Path) -> None:
    """1e999 as an interval boundary loaded as inf (the contiguity check compares inf - inf = nan)."""
    path = tmp_path / "s.TextGrid"
    path.write_text(SHORT_TEXTGRID.replace("\n1.5\n", "\n1e999\n"), encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"s\.TextGrid:5: expected a finite number for the TextGrid xmax"):
        read_textgrid(path)


@pytest.mark.parametrize("start,dur", [("nan", "0.5"), ("0", "inf"), ("-inf", "1"), ("0.25", "1" * 400),
                                       ("1e308", "1e308")])
def test_regression_ctm_non_finite_times(tmp_path: Path, start: str, dur: str) -> None:
    """read_ctm accepted NaN / infinite starts and durations (and an end overflowing to inf)."""
    path = tmp_path / "a.ctm"
    path.write_text(f"utt1 1 0 0.5 a\nutt1 1 {start} {dur} b\n")
    with pytest.raises(AlignmentError, match=r"a\.ctm:2: start and duration must be finite"):
        read_ctm(path)


def test_regression_ctm_line_numbers_count_newlines_only(tmp_path: Path) -> None:
    """read_ctm split lines at \\f, \\x1c, \\u2028 ... too (str.splitlines): one line became two
    intervals and the errors after it named the wrong line."""
    path = tmp_path / "a.ctm"
    path.write_text("utt1 1 0 0.5 a\u2028b\nutt1 1 0.5 0.5 c\nutt1 1 x 0.5 d\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"a\.ctm:1: expected numeric start/dur/conf"):
        read_ctm(path)
    path.write_text("utt1 1 0 0.5 a\x0c\nutt1 1 0.5 0.5 c\nutt1 1 x 0.5 d\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"a\.ctm:3: expected numeric"):
        read_ctm(path)
