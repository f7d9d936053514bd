"""TextGrid / CTM reading and writing (speechunits.data.alignments)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechunits.data.alignments import (
    Interval,
    format_textgrid,
    is_silence,
    read_ctm,
    read_textgrid,
    write_ctm,
    write_textgrid,
)
from speechunits.errors import AlignmentError

SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
2
"IntervalTier"
"syllables"
0
1.5
3
0
0.4
""
0.4
0.9
"h-e-l"
0.9
1.5
"l-ow"
"TextTier"
"bells"
0
1.5
1
0.7
"ding"
'''

MFA_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0.0 
xmax = 1.23 
tiers? <exists> 
size = 2 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "words" 
        xmin = 0.0 
        xmax = 1.23 
        intervals: size = 3 
        intervals [1]:
            xmin = 0.0 
            xmax = 0.31 
            text = "" 
        intervals [2]:
            xmin = 0.31 
            xmax = 0.82 
            text = "say ""hi""" 
        intervals [3]:
            xmin = 0.82 
            xmax = 1.23 
            text = "" 
    item [2]:
        class = "IntervalTier" 
        name = "phones" 
        xmin = 0.0 
        xmax = 1.23 
        intervals: size = 4 
        intervals [1]:
            xmin = 0.0 
            xmax = 0.31 
            text = "sil" 
        intervals [2]:
            xmin = 0.31 
            xmax = 0.5 
            text = "S" 
        intervals [3]:
            xmin = 0.5 
            xmax = 0.82 
            text = "EY1" 
        intervals [4]:
            xmin = 0.82 
            xmax = 1.23 
            text = "sp" 
'''


def test_short_format_hand_written(tmp_path: Path) -> None:
    p = tmp_path / "a.TextGrid"
    p.write_text(SHORT_TEXTGRID, encoding="utf-8")
    tiers = read_textgrid(p)
    assert list(tiers) == ["syllables"]  # the point tier is read and left out
    assert tiers["syllables"] == [Interval(0, 0.4, ""), Interval(0.4, 0.9, "h-e-l"), Interval(0.9, 1.5, "l-ow")]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_mfa_long_format_encodings(tmp_path: Path, encoding: str) -> None:
    p = tmp_path / "b.TextGrid"
    p.write_bytes(MFA_TEXTGRID.encode(encoding))
    tiers = read_textgrid(p)
    assert list(tiers) == ["words", "phones"]
    assert tiers["words"][1] == Interval(0.31, 0.82, 'say "hi"')
    assert [iv.label for iv in tiers["phones"]] == ["sil", "S", "EY1", "sp"]
    assert tiers["phones"][-1].end == 1.23
    assert [is_silence(iv.label) for iv in tiers["phones"]] == [True, False, False, True]


def test_write_fills_gaps_and_reads_back(tmp_path: Path) -> None:
    p = tmp_path / "out" / "c.TextGrid"
    syl = [Interval(0.25, 0.5, "a"), Interval(0.5, 0.75, "b"), Interval(1.0, 1.5, "c")]
    write_textgrid(p, {"syllables": syl, "words": [Interval(0.25, 0.75, "ab")]}, xmax=2.0)
    tiers = read_textgrid(p)
    assert tiers["syllables"] == [
        Interval(0, 0.25, ""), *syl[:2], Interval(0.75, 1.0, ""), syl[2], Interval(1.5, 2.0, "")
    ]
    assert tiers["words"][-1] == Interval(0.75, 2.0, "")
    assert not list((tmp_path / "out").glob("*.tmp*"))


def test_write_rejects_overlap_and_short_xmax(tmp_path: Path) -> None:
    with pytest.raises(AlignmentError, match="overlaps"):
        write_textgrid(tmp_path / "x.TextGrid", {"t": [Interval(0, 1, "a"), Interval(0.5, 2, "b")]})
    with pytest.raises(AlignmentError, match="xmax"):
        write_textgrid(tmp_path / "y.TextGrid", {"t": [Interval(0, 1, "a")]}, xmax=0.5)
    assert not (tmp_path / "x.TextGrid").exists()


def _corrupt(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    assert old in MFA_TEXTGRID
    p = tmp_path / "bad.TextGrid"
    p.write_text(MFA_TEXTGRID.replace(old, new, count), encoding="utf-8")
    return p


def _line_of(p: Path, needle: str) -> int:
    return next(i for i, line in enumerate(p.read_text().splitlines(), start=1) if needle in line)


def test_malformed_truncated(tmp_path: Path) -> None:
    p = tmp_path / "trunc.TextGrid"
    p.write_text(MFA_TEXTGRID[: MFA_TEXTGRID.index("intervals [3]") + 40], encoding="utf-8")
    with pytest.raises(AlignmentError, match="truncated") as exc:
        read_textgrid(p)
    assert exc.value.path == p and exc.value.line is not None
    assert str(p) in str(exc.value)


def test_malformed_unknown_class(tmp_path: Path) -> None:
    p = _corrupt(tmp_path, 'class = "IntervalTier" \n        name = "phones"', 'class = "PitchTier" \n        name = "phones"')
    with pytest.raises(AlignmentError, match="unknown tier class 'PitchTier'") as exc:
        read_textgrid(p)
    assert exc.value.line == _line_of(p, "PitchTier")


def test_malformed_overlap_and_gap(tmp_path: Path) -> None:
    p = _corrupt(tmp_path, "xmin = 0.5 ", "xmin = 0.45 ")
    with pytest.raises(AlignmentError, match="overlaps") as exc:
        read_textgrid(p)
    assert exc.value.line == _line_of(p, "xmin = 0.45")
    p = _corrupt(tmp_path, "xmin = 0.5 ", "xmin = 0.55 ")
    with pytest.raises(AlignmentError, match="gap"):
        read_textgrid(p)


def test_malformed_xmin_after_xmax(tmp_path: Path) -> None:
    p = _corrupt(tmp_path, "xmax = 0.82 \n            text = \"say", "xmax = 0.3 \n            text = \"say")
    with pytest.raises(AlignmentError, match="xmin 0.31 > xmax 0.3") as exc:
        read_textgrid(p)
    assert exc.value.line == _line_of(p, "xmin = 0.31")


def test_malformed_not_a_textgrid(tmp_path: Path) -> None:
    p = tmp_path / "n.TextGrid"
    p.write_text('File type = "ooTextFile"\nObject class = "Sound"\n', encoding="utf-8")
    with pytest.raises(AlignmentError, match="TextGrid"):
        read_textgrid(p)
    p.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(AlignmentError):
        read_textgrid(p)


_label = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8)


@st.composite
def _tiers(draw: st.DrawFn) -> dict[str, list[Interval]]:
    names = draw(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), min_size=1, max_size=3, unique=True))
    out = {}
    for name in names:
        steps = draw(st.lists(st.floats(0.001, 3.0, allow_nan=False), min_size=0, max_size=12))
        t, ivs = 0.0, []
        for i, step in enumerate(steps):
            start, t = t, t + step
            if i % 3 != 2:  # leave some gaps
                ivs.append(Interval(start, t, draw(_label)))
        out[name] = ivs
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tiers=_tiers(), extra=st.floats(0, 2))
def test_textgrid_roundtrip_hypothesis(tmp_path: Path, tiers: dict[str, list[Interval]], extra: float) -> None:
    last = max((iv.end for ivs in tiers.values() for iv in ivs), default=0.0)
    p = tmp_path / "rt.TextGrid"
    write_textgrid(p, tiers, xmax=last + extra)
    back = read_textgrid(p)
    assert list(back) == list(tiers)
    for name, ivs in tiers.items():
        assert [iv for iv in back[name] if iv.label] == ivs
        # contiguous cover of [0, xmax]
        if back[name]:
            assert back[name][0].start == 0
            assert all(a.end == b.start for a, b in zip(back[name], back[name][1:]))
    # writing what was read reproduces the same bytes
    assert format_textgrid(back, last + extra) == p.read_bytes().decode("utf-8")


def test_ctm_roundtrip_and_errors(tmp_path: Path) -> None:
    ali = {
        "u2": [Interval(0.5, 0.75, "b"), Interval(0.1, 0.3, "a")],
        "u1": [Interval(0.0, 1.25, "hello"), Interval(1.25, 1.5, "")],
    }
    p = tmp_path / "a.ctm"
    write_ctm(p, ali)
    lines = p.read_text().splitlines()
    assert lines[0] == "u1 1 0 1.25 hello" and len(lines) == 3
    back = read_ctm(p)
    assert back["u2"] == [Interval(0.1, 0.3, "a"), Interval(0.5, 0.75, "b")]
    assert back["u1"] == [Interval(0.0, 1.25, "hello")]
    p.write_text(";; comment\nu1 A 0.5 0.2 x 0.9\nu1 A 0.1 0.2 y\n")
    assert [iv.label for iv in read_ctm(p)["u1"]] == ["y", "x"]
    p.write_text("u1 A 0.5 0.2 x\nu1 A zero 0.2 y\n")
    with pytest.raises(AlignmentError, match="numeric") as exc:
        read_ctm(p)
    assert exc.value.line == 2
    p.write_text("u1 A 0.5\n")
    with pytest.raises(AlignmentError, match="fields"):
        read_ctm(p)
    with pytest.raises(AlignmentError, match="whitespace"):
        write_ctm(tmp_path / "b.ctm", {"u": [Interval(0, 1, "two words")]})
