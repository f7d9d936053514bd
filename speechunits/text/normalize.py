"""Text normalisation shared by both front ends.

A TTS model learns from symbols, so everything that does not change how a sentence is spoken
(case, quotes, brackets, dashes, runs of spaces) is removed, while what marks phrasing (the
punctuation in :data:`PHRASE_MARKS`) is kept: the model pauses there. A mark inside a number
(``1,000``, ``3.5``, ``10:30``) is part of the number, not a phrase break.
"""

from __future__ import annotations

import re
import unicodedata

PHRASE_MARKS = ",.?!;:"
"""Punctuation kept as symbols, because it marks phrasing (a pause, a question)."""

_MARK_CLASS = "[" + re.escape(PHRASE_MARKS) + "]"
PHRASE_MARK = re.compile(rf"{_MARK_CLASS}(?<!\d[,.:](?=\d))")
"""One phrase mark: a mark of :data:`PHRASE_MARKS`, unless it is a ``,``/``.``/``:`` between digits."""

_MARK_RUN = re.compile(rf"\s*({PHRASE_MARK.pattern})(?:\s*{PHRASE_MARK.pattern})*\s*")
_LEADING_MARKS = re.compile(rf"^(?:\s*{PHRASE_MARK.pattern})+")
_LONE_APOSTROPHE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")  # not between two letters
_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})

ABBREVIATIONS_EN: dict[str, str] = {
    "mr": "mister", "mrs": "misess", "ms": "miss", "dr": "doctor", "drs": "doctors", "st": "saint",
    "jr": "junior", "sr": "senior", "co": "company", "ltd": "limited", "capt": "captain", "col": "colonel",
    "gen": "general", "lt": "lieutenant", "maj": "major", "sgt": "sergeant", "rev": "reverend",
    "hon": "honorable", "esq": "esquire", "ft": "fort", "prof": "professor", "vs": "versus", "etc": "et cetera",
}
"""English abbreviations written with a period: expanded, because their period is no phrase break."""

_ABBREVIATION_EN = re.compile(r"\b(" + "|".join(ABBREVIATIONS_EN) + r")\.", re.IGNORECASE)


def _keep(char: str) -> bool:
    """Letters (with their combining marks), decimal digits, apostrophes and phrase marks."""
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char == "'" or char in PHRASE_MARKS


def normalize_text(text: str, *, lowercase: bool = True, language: str = "en-us") -> str:
    """Normalised ``text``: NFKC; English abbreviations (``Mr.``) expanded when ``language`` is
    English; every character other than letters, digits, apostrophes between letters and
    :data:`PHRASE_MARKS` becomes a space; a run of marks becomes its first mark followed by one
    space (none before it, none at the start or end); whitespace collapsed; lower case unless
    ``lowercase`` is False (espeak-ng reads an upper-case ``US`` as letters). May return "".
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if language.lower().startswith("en"):
        text = _ABBREVIATION_EN.sub(lambda m: ABBREVIATIONS_EN[m.group(1).lower()] + " ", text)
    text = "".join(c if _keep(c) else " " for c in text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    text = _LEADING_MARKS.sub(" ", text)
    text = _MARK_RUN.sub(lambda m: m.group(1) + " ", text)
    text = _SPACES.sub(" ", text).strip()
    return text.lower() if lowercase else text


def split_phrases(normalized: str) -> list[tuple[str, str]]:
    """``normalize_text`` output -> ``[(words, mark), ...]``: the words of each phrase and the
    phrase mark that ends it ("" for a last phrase without one)."""
    parts = PHRASE_MARK.split(normalized)
    marks = PHRASE_MARK.findall(normalized) + [""]
    return [(words.strip(), mark) for words, mark in zip(parts, marks) if words.strip() or mark]
