"""The judge's character vocabulary: CTC blank (id 0), space, apostrophe, A-Z, plus every
other character the (upper-cased) training transcripts hold."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

from speechunits.errors import CheckpointError

BLANK = "<blank>"
BASE_CHARS: tuple[str, ...] = (" ", "'", *string.ascii_uppercase)
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Upper case, every run of whitespace one space, no leading/trailing space."""
    return _SPACES.sub(" ", text.upper()).strip()


class CharVocab:
    """Characters <-> ids; id 0 is the CTC blank, never a character."""

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError(f"a vocabulary is distinct single characters, got {chars!r}")
        self.chars: list[str] = chars
        self._index = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharVocab":
        """The base characters, then the other characters of the normalised texts, sorted."""
        seen: set[str] = set()
        for t in texts:
            seen.update(normalize_text(t))
        extra = sorted(seen - set(BASE_CHARS))
        return cls([*BASE_CHARS, *extra])

    def __len__(self) -> int:
        """Output classes, the blank included."""
        return len(self.chars) + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.chars == self.chars

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def encode(self, text: str) -> list[int]:
        """Ids of the normalised text; characters outside the vocabulary are dropped."""
        return [self._index[c] for c in normalize_text(text) if c in self._index]

    def unknown(self, text: str) -> set[str]:
        """The characters of the normalised text that the vocabulary lacks."""
        return {c for c in normalize_text(text) if c not in self._index}

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids (blanks skipped; no CTC collapsing: decode does that)."""
        return normalize_text("".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars)))

    def to_list(self) -> list[str]:
        """The characters (id 1 first), as stored in checkpoints."""
        return list(self.chars)

    @classmethod
    def from_list(cls, chars: Sequence[str], source: str | None = None) -> "CharVocab":
        """Inverse of :meth:`to_list`; CheckpointError (naming ``source``) when malformed."""
        try:
            return cls([str(c) for c in chars])
        except (TypeError, ValueError) as err:
            raise CheckpointError(source, f"malformed vocabulary: {err}") from err
