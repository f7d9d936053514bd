"""Text -> the symbol sequence a TTS model reads: phonemes (espeak-ng) or characters.

Both kinds keep the word boundaries (" ") and the phrase marks of :data:`PHRASE_MARKS` as
symbols, so a model can learn where to pause and where a question rises. The kind and language
are stored with a model (:meth:`TextFrontend.to_dict`), and there is no silent fallback from
phonemes to characters: that would change the model's inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from speechunits.errors import ConfigError
from speechunits.text.espeak import Espeak
from speechunits.text.normalize import normalize_text, split_phrases

KINDS = ("phonemes", "characters")
WORD_BOUNDARY = " "


class TextFrontend:
    """``fe(text) -> symbols``; ``fe.batch(texts)`` for a corpus.

    Args:
        kind: "phonemes" (espeak-ng IPA, one symbol per phoneme, stress on the vowel) or
            "characters" (the normalised text's characters).
        language: espeak-ng language (``espeak-ng --voices``); for characters it only decides
            whether English abbreviations are expanded.
        workers: espeak-ng processes run at once by :meth:`batch` (default: the CPUs, at most 8).
    """

    def __init__(self, kind: str = "phonemes", language: str = "en-us", workers: int | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(None, f"text front end kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.language = language
        self.espeak = Espeak(language, workers) if kind == "phonemes" else None

    def __repr__(self) -> str:
        return f"TextFrontend(kind={self.kind!r}, language={self.language!r})"

    def normalize(self, text: str | None, utt_id: str | None = None) -> str:
        """The normalised text; ValueError (naming ``utt_id``) when nothing pronounceable is left."""
        where = f"utterance {utt_id!r}: " if utt_id is not None else ""
        if text is None or not text.strip():
            raise ValueError(f"{where}no text to convert (empty or missing transcript)")
        normalized = normalize_text(text, lowercase=self.kind == "characters", language=self.language)
        if not normalized:
            raise ValueError(f"{where}text {text!r} holds nothing to pronounce (no letters or digits)")
        return normalized

    def __call__(self, text: str | None, utt_id: str | None = None) -> list[str]:
        """Symbols of one text."""
        return self.batch([text], None if utt_id is None else [utt_id])[0]

    def batch(self, texts: Sequence[str | None], ids: Sequence[str] | None = None,
              progress: bool = False) -> list[list[str]]:
        """Symbols of many texts; the phrases of all of them go to espeak-ng together (see
        :mod:`speechunits.text.espeak`), so this is far faster than calling the front end per text."""
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        normalized = [self.normalize(t, None if ids is None else ids[i]) for i, t in enumerate(texts)]
        if self.espeak is None:
            return [list(n) for n in normalized]
        phrases = [split_phrases(n) for n in normalized]
        flat = [words for text_phrases in phrases for words, _mark in text_phrases if words]
        phonemized = iter(self.espeak.phonemize(flat, progress=progress))
        return [_join(text_phrases, phonemized) for text_phrases in phrases]

    def to_dict(self) -> dict[str, Any]:
        """What rebuilds this front end (stored in a model file); the espeak-ng version is
        recorded because its phoneme inventory changes between versions."""
        d: dict[str, Any] = {"kind": self.kind, "language": self.language}
        if self.espeak is not None:
            d["espeak_version"] = self.espeak.version
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextFrontend":
        """Inverse of :meth:`to_dict`; warns when espeak-ng is not the version the dict was made with."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ConfigError(None, f"a text front end dict needs 'kind' (and 'language'), got {d!r}")
        fe = cls(kind=d["kind"], language=d.get("language", "en-us"))
        stored = d.get("espeak_version")
        if fe.espeak is not None and stored and stored != fe.espeak.version:
            warnings.warn(f"the text front end was made with espeak-ng {stored}, this is {fe.espeak.version}: "
                          "its phonemes may differ from those the model was trained on", stacklevel=2)
        return fe


def _join(text_phrases: list[tuple[str, str]], phonemized: Any) -> list[str]:
    """Phrases' words of phonemes and their marks -> one symbol list:
    ``word " " word mark " " word ...`` (no boundary at either end)."""
    symbols: list[str] = []
    for words_text, mark in text_phrases:
        words = next(phonemized) if words_text else []
        for word in words:
            if symbols and symbols[-1] != WORD_BOUNDARY:
                symbols.append(WORD_BOUNDARY)
            symbols += word
        if mark:
            if symbols and symbols[-1] == WORD_BOUNDARY:
                symbols.pop()
            symbols.append(mark)
    return symbols
