"""Reference syllables from phone tiers (speechunits.eval.syllabify)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.data.alignments import Interval
from speechunits.errors import AlignmentError, ConfigError
from speechunits.eval.syllabify import ARPABET, load_phone_map, syllabify


def tier(phones: str, step: float = 0.1) -> list[Interval]:
    """Contiguous intervals of ``step`` seconds, one per space-separated phone."""
    return [Interval(round(i * step, 6), round((i + 1) * step, 6), p) for i, p in enumerate(phones.split())]


def labels(phones: str, **kwargs: object) -> list[str]:
    return [iv.label for iv in syllabify(tier(phones), **kwargs)]  # type: ignore[arg-type]


@pytest.mark.parametrize("phones, expected", [
    ("m ah1 m er0", ["m ah1", "m er0"]),  # er is a nucleus
    ("ae1 k t r ah0 s", ["ae1 k", "t r ah0 s"]),  # actress: k t r is no onset, t r is
    ("eh1 k s t r ah0", ["eh1 k", "s t r ah0"]),  # extra: s + stop + liquid onset
    ("s t r eh1 ng k th", ["s t r eh1 ng k th"]),  # strength: one syllable
    ("ae1 k s ah0 s", ["ae1 k", "s ah0 s"]),  # axis: k s rises in sonority but is no English onset
    ("ae1 f t er0", ["ae1 f", "t er0"]),  # after: f t falls
    ("s ih1 ng er0", ["s ih1 ng", "er0"]),  # ng never starts a syllable
    ("b ah1 t en0", ["b ah1", "t en0"]),  # syllabic n
    ("l ih1 t el0", ["l ih1", "t el0"]),  # syllabic l
    ("k ey1 ao2 s", ["k ey1", "ao2 s"]),  # hiatus: two nuclei, empty onset
    ("ih0 n s t r ah1 k sh ah0 n", ["ih0 n", "s t r ah1 k", "sh ah0 n"]),
    ("IH0 N S T R AH1 K SH AH0 N", ["IH0 N", "S T R AH1 K", "SH AH0 N"]),  # case-insensitive, labels kept
    ("hh m", ["hh m"]),  # no vowel: one syllable
])
def test_arpabet_words(phones: str, expected: list[str]) -> None:
    assert labels(phones) == expected


def test_spans_tile_the_phones() -> None:
    sylls = syllabify(tier("ae1 k t r ah0 s"))
    assert [(iv.start, iv.end) for iv in sylls] == [(0.0, 0.2), (0.2, 0.6)]


def test_silences_split_and_are_dropped() -> None:
    assert labels("k ae1 t ae1 t") == ["k ae1", "t ae1 t"]  # one run: t goes to the onset
    assert labels("sil k ae1 t sp ae1 t spn") == ["k ae1 t", "ae1 t"]
    empty = [Interval(0.0, 0.1, "k"), Interval(0.1, 0.2, "ae1"), Interval(0.2, 0.3, "t"),
             Interval(0.3, 0.4, ""), Interval(0.4, 0.5, "ae1"), Interval(0.5, 0.6, "t")]
    assert [iv.label for iv in syllabify(empty)] == ["k ae1 t", "ae1 t"]
    assert syllabify(tier("sil sp")) == []


def test_word_boundaries_split() -> None:
    phones = tier("k ae1 t ae1 t")
    words = [Interval(0.0, 0.3, "cat"), Interval(0.3, 0.5, "at")]
    assert [iv.label for iv in syllabify(phones, words=words)] == ["k ae1 t", "ae1 t"]
    # a word tier with silence intervals and phones slightly off the word edges (midpoints decide)
    words = [Interval(0.0, 0.01, ""), Interval(0.01, 0.29, "cat"), Interval(0.29, 0.5, "at")]
    assert [iv.label for iv in syllabify(phones, words=words)] == ["k ae1 t", "ae1 t"]
    # a one-word tier changes nothing
    assert [iv.label for iv in syllabify(phones, words=[Interval(0, 0.5, "catat")])] == ["k ae1", "t ae1 t"]


def test_phone_map_file(tmp_path: Path) -> None:
    path = tmp_path / "ipa.map"
    path.write_text("# a small IPA set\na vowel\ni vowel\nt stop\nk stop\ns fricative  # sibilant\n"
                    "ʁ liquid\nN nasal\n\n", encoding="utf-8")
    pmap = load_phone_map(path)
    assert pmap.source == str(path) and not pmap.english_onsets
    assert [iv.label for iv in syllabify(tier("a s t ʁ a"), pmap)] == ["a", "s t ʁ a"]  # s + stop + liquid
    # without the English onset list, a rising k s is an onset (ARPAbet splits it: "ae1 k | s ah0 s")
    assert [iv.label for iv in syllabify(tier("a k s a"), pmap)] == ["a", "k s a"]
    assert [iv.label for iv in syllabify(tier("a t k a"), pmap)] == ["a t", "k a"]  # flat: no onset
    assert [iv.label for iv in syllabify(tier("a1 N i2"), pmap)] == ["a1", "N i2"]  # stress digits dropped
    with pytest.raises(AlignmentError, match="'n'"):  # case-sensitive
        syllabify(tier("a n i"), pmap)


@pytest.mark.parametrize("text, match", [
    ("a vowel\nt plosive\n", "unknown class 'plosive'"),
    ("a vowel extra\n", "expected 'PHONE CLASS'"),
    ("a vowel\na stop\n", "two classes"),
    ("# nothing\n", "empty"),
])
def test_phone_map_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.map"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as exc:
        load_phone_map(path)
    assert exc.value.path == path


def test_unknown_phone_names_file_utterance_and_phone(tmp_path: Path) -> None:
    grid = tmp_path / "u1.TextGrid"
    with pytest.raises(AlignmentError) as exc:
        syllabify(tier("k ae1 bcl t"), source=grid, utt="u1")
    msg = str(exc.value)
    assert str(grid) in msg and "'u1'" in msg and "'bcl'" in msg and ARPABET.source in msg and "--phone-map" in msg
    path = tmp_path / "small.map"
    path.write_text("a vowel\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match="'t'") as exc:
        syllabify(tier("a t"), load_phone_map(path), source=grid, utt="u1")
    assert str(path) in str(exc.value)
