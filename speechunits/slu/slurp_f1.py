"""SLURP's entity metrics: inline ``[type : filler]`` annotations, span-F1 and SLU-F1.

Definitions follow the SLURP evaluation (Bastianelli et al., 2020, "SLURP: A Spoken
Language Understanding Resource Package", ``scripts/evaluation`` of the SLURP repository),
micro-averaged over entity types:

* **span-F1** (exact): a hypothesis entity is a true positive when an identical
  ``(type, filler)`` is still unmatched among the reference entities of that utterance
  (each reference entity matches once); otherwise a false positive. Unmatched reference
  entities are false negatives.
* **span-distance F1** (``word`` and ``char``): the hypothesis entities are visited in order;
  one whose type is among the still unmatched reference entities is matched to the one of
  that type with the lowest filler distance ``d`` (the first on ties) and adds ``1`` to TP
  and ``d`` to both FP and FN; one whose type is not there adds 1 to FP; unmatched
  reference entities add 1 to FN. ``word``: word edit distance over the reference filler's
  word count (its WER, which can exceed 1); ``char``: character edit distance over the
  longer filler's length (normalised Levenshtein, in [0, 1]).
* **SLU-F1**: the TP/FP/FN of the word and the char variant are summed, then
  ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)``, ``F1 = 2PR / (P + R)`` (0 where undefined).

Reference fillers are compared lower-cased, as the reference evaluation does with the gold
tokens; hypotheses are compared as given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from speechunits.eval.intelligibility import levenshtein

Entity = tuple[str, str]
"""``(type, filler)``: ``("time", "five am")``."""

_SPAN = re.compile(r"\[([^\[\]]*)\]")


def parse_annotation(text: str) -> tuple[str, list[Entity]]:
    """``"wake me up at [time : five am]"`` -> ``("wake me up at five am", [("time", "five am")])``.

    Never raises, so it can read model hypotheses: a bracketed span without a colon or with
    an empty type or filler yields no entity (its words stay in the text, brackets dropped);
    stray unmatched brackets are dropped. Whitespace is normalised to single spaces.
    """
    entities: list[Entity] = []

    def span(match: re.Match[str]) -> str:
        etype, colon, filler = match.group(1).partition(":")
        etype, filler = " ".join(etype.split()), " ".join(filler.split())
        if colon and etype and filler:
            entities.append((etype, filler))
            return f" {filler} "
        return f" {match.group(1)} "

    plain = _SPAN.sub(span, text).replace("[", " ").replace("]", " ")
    return " ".join(plain.split()), entities


def _edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    ids: dict[str, int] = {}
    return levenshtein([ids.setdefault(t, len(ids)) for t in ref], [ids.setdefault(t, len(ids)) for t in hyp])


def word_distance(ref: str, hyp: str) -> float:
    """Word edit distance over the reference word count (1.0 for an empty reference and a non-empty hypothesis)."""
    r, h = ref.split(), hyp.split()
    if not r:
        return 0.0 if not h else 1.0
    return _edits(r, h) / len(r)


def char_distance(ref: str, hyp: str) -> float:
    """Character edit distance over the longer string's length (0.0 for two empty strings)."""
    longest = max(len(ref), len(hyp))
    return _edits(list(ref), list(hyp)) / longest if longest else 0.0


@dataclass
class Counts:
    """Soft true positives, false positives and false negatives."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def prf(self) -> tuple[float, float, float]:
        """Precision, recall and F1; 0 where a ratio is 0/0."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def exact_counts(ref: Sequence[Entity], hyp: Sequence[Entity]) -> Counts:
    """Span-F1 counts of one utterance (see the module docstring)."""
    left = [(t, f.lower()) for t, f in ref]
    c = Counts()
    for ent in hyp:
        if ent in left:
            left.remove(ent)
            c.tp += 1
        else:
            c.fp += 1
    c.fn += len(left)
    return c


def distance_counts(ref: Sequence[Entity], hyp: Sequence[Entity], distance: Callable[[str, str], float]) -> Counts:
    """Span-distance counts of one utterance (see the module docstring)."""
    left = [(t, f.lower()) for t, f in ref]
    c = Counts()
    for etype, filler in hyp:
        candidates = [(distance(f, filler), i) for i, (t, f) in enumerate(left) if t == etype]
        if not candidates:
            c.fp += 1
            continue
        d, i = min(candidates)
        left.pop(i)
        c.tp += 1
        c.fp += d
        c.fn += d
    c.fn += len(left)
    return c


def slu_f1(references: Sequence[Sequence[Entity]], hypotheses: Sequence[Sequence[Entity]]) -> dict[str, float]:
    """Corpus-level SLURP entity metrics of aligned per-utterance entity lists.

    Returns ``slu_f1`` (with ``slu_precision``, ``slu_recall``), ``word_f1``, ``char_f1`` and
    ``span_f1`` (exact), all in [0, 1]. Raises ValueError when the two lists differ in length.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"slu_f1: {len(references)} references but {len(hypotheses)} hypotheses")
    exact, word, char = Counts(), Counts(), Counts()
    for ref, hyp in zip(references, hypotheses):
        exact += exact_counts(ref, hyp)
        word += distance_counts(ref, hyp, word_distance)
        char += distance_counts(ref, hyp, char_distance)
    p, r, f = (word + char).prf()
    return {"slu_f1": f, "slu_precision": p, "slu_recall": r, "word_f1": word.prf()[2], "char_f1": char.prf()[2],
            "span_f1": exact.prf()[2]}


__all__ = ["Entity", "char_distance", "parse_annotation", "slu_f1", "word_distance"]
