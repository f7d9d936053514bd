"""Deterministic English sentence generation for the synthetic corpora.

A small template grammar over the built-in vocabulary (``vocab.json``, a few hundred
common words) produces varied, pronounceable sentences of 4-15 words. Everything is
driven by a ``random.Random`` passed in, so a seed fixes the text.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

VOCAB_PATH = Path(__file__).with_name("vocab.json")
MIN_WORDS, MAX_WORDS = 4, 15

# Slots: N name, D determiner, A adjective, n noun, Vt/Vb/Vi verbs, Adv adverb, P preposition,
# Pl place, T time phrase, Np plural noun, C conjunction, # number.
TEMPLATES: tuple[str, ...] = (
    "{D} {A} {n} {Vt} {D} {n} {P} the {Pl}.",
    "{N} {Vi} {Adv} {T}.",
    "{T}, {N} {Vt} {D} {A} {n}.",
    "{D} {n} {Vi} {P} the {Pl}, {C} {N} {Vt} {D} {n}.",
    "Did {N} {Vb} the {A} {n} {T}?",
    "{N} {Vt} {#} {Np} {P} the {Pl}.",
    "{N} and {N} {Vi} {Adv} {P} the {A} {Pl}.",
    "The {n} was {A}, {C} the {n} was {A}.",
    "{N} {Vt} {D} {n} {C} {D} {A} {n} {Vi} {Adv}.",
    "We {Vt} {D} {A} {n} {T}.",
    "Please {Vb} the {n} {P} the {Pl}.",
    "{T}, the {A} {n} {Vi} {P} the {Pl}.",
    "Why did {N} {Vb} {#} {Np}?",
    "{N} {Vi} {C} {N} {Vt} {D} {A} {n} {Adv}.",
)

_SLOTS = {
    "N": "names", "D": "determiners", "A": "adjectives", "n": "nouns", "Vt": "verbs_transitive",
    "Vb": "verbs_base", "Vi": "verbs_intransitive", "Adv": "adverbs", "P": "prepositions",
    "Pl": "places", "T": "times", "Np": "plurals", "C": "conjunctions",
}

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
    "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, tuple[str, ...]]:
    """The word lists of ``vocab.json`` by category."""
    data = json.loads(VOCAB_PATH.read_text(encoding="utf-8"))
    return {k: tuple(v) for k, v in data.items()}


def number_words(n: int) -> str:
    """English words for 0 <= n < 100 (``twenty-one``)."""
    if not 0 <= n < 100:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else "-" + _ONES[ones])


@dataclass(frozen=True)
class Sentence:
    """A generated sentence: ``raw`` (may hold digits; what is synthesized) and ``normalized`` (all words)."""

    raw: str
    normalized: str

    @property
    def num_words(self) -> int:
        return len(transcript_words(self.normalized))


def transcript_words(text: str) -> list[str]:
    """Words of a text without punctuation (apostrophes kept, hyphens split)."""
    return re.findall(r"[A-Za-z']+", text.replace("-", " "))


def librispeech_transcript(text: str) -> str:
    """LibriSpeech-style transcript: UPPER-CASE words, no punctuation."""
    return " ".join(transcript_words(text)).upper()


def fix_articles(words: list[str]) -> list[str]:
    """"a" becomes "an" before a word that starts with a vowel letter (in place; returns ``words``)."""
    for i in range(len(words) - 1):
        if words[i].lower() == "a" and words[i + 1][:1].lower() in "aeiou":
            words[i] = words[i][0] + "n" if len(words[i]) == 1 else words[i]
    return words


def _render(template: str, rng: random.Random) -> Sentence:
    vocab = vocabulary()
    raw_parts: list[str] = []
    norm_parts: list[str] = []
    for token in re.split(r"(\{[^}]+\})", template):
        if not (token.startswith("{") and token.endswith("}")):
            raw_parts.append(token)
            norm_parts.append(token)
            continue
        slot = token[1:-1]
        if slot == "#":
            n = rng.randint(2, 99)
            raw_parts.append(str(n))
            norm_parts.append(number_words(n))
        else:
            word = rng.choice(vocab[_SLOTS[slot]])
            raw_parts.append(word)
            norm_parts.append(word)

    def finish(parts: list[str]) -> str:
        words = fix_articles("".join(parts).split(" "))
        text = " ".join(words)
        return text[0].upper() + text[1:]

    return Sentence(raw=finish(raw_parts), normalized=finish(norm_parts))


def generate_sentence(rng: random.Random) -> Sentence:
    """One sentence of 4-15 words from a random template."""
    while True:
        s = _render(rng.choice(TEMPLATES), rng)
        if MIN_WORDS <= s.num_words <= MAX_WORDS:
            return s


def unique_sentences(n: int, rng: random.Random, used: set[str]) -> list[Sentence]:
    """``n`` sentences whose normalized text is not in ``used`` (which is updated)."""
    out: list[Sentence] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * (n + 10):
            raise RuntimeError(f"could not generate {n} distinct sentences; vocabulary exhausted")
        s = generate_sentence(rng)
        key = s.normalized.lower()
        if key in used:
            continue
        used.add(key)
        out.append(s)
    return out
