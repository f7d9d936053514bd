"""TextGrid reading checks only the tiers it is asked for (EMU exports with irregular tiers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.data.alignments import Interval, read_textgrid, textgrid_syllables
from speechunits.errors import AlignmentError

XMAX = 1.2

# An EMU-webApp/emuR style export: a well-formed Syllable tier next to a Phoneme tier whose
# intervals overlap, come out of order, leave gaps and even run backwards, a point tier, and an
# unrequested tier that repeats a name.
TIERS: list[tuple[str, str, list[tuple]]] = [
    ("IntervalTier", "Phoneme", [(0.0, 0.3, "h"), (0.25, 0.5, "@"), (0.9, 0.7, "l"), (0.55, 0.6, "@U")]),
    ("TextTier", "Tone", [(0.4, "H*"), (0.9, "L%")]),
    ("IntervalTier", "Syllable", [(0.0, 0.2, ""), (0.2, 0.6, "h@"), (0.6, 1.0, "l@U"), (1.0, XMAX, "")]),
    ("IntervalTier", "Phoneme", [(0.0, XMAX, "")]),
]


def long_format(tiers: list) -> str:
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {XMAX} ",
             "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for t, (cls, name, items) in enumerate(tiers, start=1):
        lines += [f"    item [{t}]:", f'        class = "{cls}" ', f'        name = "{name}" ',
                  "        xmin = 0 ", f"        xmax = {XMAX} "]
        if cls == "IntervalTier":
            lines.append(f"        intervals: size = {len(items)} ")
            for i, (a, b, text) in enumerate(items, start=1):
                lines += [f"        intervals [{i}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                          f'            text = "{text}" ']
        else:
            lines.append(f"        points: size = {len(items)} ")
            for i, (t_, mark) in enumerate(items, start=1):
                lines += [f"        points [{i}]:", f"            number = {t_} ", f'            mark = "{mark}" ']
    return "\n".join(lines) + "\n"


def short_format(tiers: list) -> str:
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(XMAX), "<exists>", str(len(tiers))]
    for cls, name, items in tiers:
        lines += [f'"{cls}"', f'"{name}"', "0", str(XMAX), str(len(items))]
        for item in items:
            lines += [str(v) if not isinstance(v, str) else f'"{v}"' for v in item]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["long", "short"])
def emu_grid(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"emu_{request.param}.TextGrid"
    path.write_text((long_format if request.param == "long" else short_format)(TIERS), encoding="utf-8")
    return path


SYLLABLES = [Interval(0.0, 0.2, ""), Interval(0.2, 0.6, "h@"), Interval(0.6, 1.0, "l@U"), Interval(1.0, XMAX, "")]


def test_irregular_tiers_do_not_block_the_requested_one(emu_grid: Path) -> None:
    assert read_textgrid(emu_grid, tiers=["Syllable"]) == {"Syllable": SYLLABLES}
    assert textgrid_syllables(emu_grid, "Syllable") == SYLLABLES[1:3]


def test_reading_everything_or_the_irregular_tier_still_fails(emu_grid: Path) -> None:
    with pytest.raises(AlignmentError, match="overlaps"):
        read_textgrid(emu_grid)
    with pytest.raises(AlignmentError, match="tier 'Phoneme'"):
        read_textgrid(emu_grid, tiers=["Phoneme"])


def test_requested_point_missing_and_optional_tiers(emu_grid: Path) -> None:
    with pytest.raises(AlignmentError, match="'Tone' is a point tier"):
        read_textgrid(emu_grid, tiers=["Syllable", "Tone"])
    with pytest.raises(AlignmentError, match=r"no tier named 'words'; tiers found: \['Phoneme', 'Tone', 'Syllable'"):
        read_textgrid(emu_grid, tiers=["Syllable", "words"])
    assert list(read_textgrid(emu_grid, tiers=["Syllable", "words"], required=False)) == ["Syllable"]


def test_unrequested_tiers_must_still_parse(tmp_path: Path) -> None:
    """Skipping is parsing, not guessing: a tier whose values are not numbers/strings still fails."""
    path = tmp_path / "broken.TextGrid"
    path.write_text(long_format(TIERS).replace("xmax = 0.7 ", 'xmax = "0.7" '), encoding="utf-8")
    with pytest.raises(AlignmentError, match="expected xmax of interval 3 of tier 'Phoneme'"):
        read_textgrid(path, tiers=["Syllable"])
    path.write_text("\n".join(long_format(TIERS).splitlines()[:-2]), encoding="utf-8")  # last tier cut short
    with pytest.raises(AlignmentError, match="truncated"):
        read_textgrid(path, tiers=["Syllable"])


def test_eval_boundaries_scores_an_emu_syllable_tier(emu_grid: Path, tmp_path: Path) -> None:
    from speechunits.eval.boundaries_cli import load_eval_set
    from speechunits.units import UnitSetWriter

    align = tmp_path / "align"
    align.mkdir()
    (align / "utt1.TextGrid").write_bytes(emu_grid.read_bytes())
    units = tmp_path / "units"
    with UnitSetWriter(units, kind="syllable", sample_rate=16000, hop=320) as w:
        w.add(id="utt1", audio="utt1.wav", num_samples=int(XMAX * 16000), sample_rate=16000, starts=[10, 30],
              ends=[30, 50])
    got = load_eval_set(units, align, "Syllable")
    assert got.ref["utt1"].tolist() == pytest.approx([0.2, 0.6, 1.0])
    assert got.pred["utt1"].tolist() == pytest.approx([0.2, 0.6, 1.0])
    assert got.ref_tokens == 2
