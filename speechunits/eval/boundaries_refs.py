"""Where the reference syllables of a boundary evaluation come from, and the flags that say so.

Shared by ``eval-boundaries`` and ``tune-segmentation``: the references are either the
non-silence intervals of a syllable tier (``--tier``), or, with ``--syllabify-phones``, a
phone tier syllabified by :func:`speechunits.eval.syllabify.syllabify` (within the words
of ``--word-tier`` when the TextGrid has one). Only the tiers read have to be well formed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from speechunits.data.alignments import Interval, read_textgrid, textgrid_syllable_spans
from speechunits.errors import ConfigError
from speechunits.eval.boundaries import MATCHINGS
from speechunits.eval.syllabify import ARPABET, PhoneMap, load_phone_map, syllabify

SYLLABLE_TIER = "syllable tier"
SYLLABIFIED_PHONES = "syllabified phones"


@dataclass(frozen=True)
class ReferenceSpec:
    """How to get an utterance's reference syllables out of its TextGrid."""

    tier: str = "syllables"
    syllabify_phones: bool = False
    phone_tier: str = "phones"
    word_tier: str | None = "words"
    """Word tier that syllables may not cross (used where a TextGrid has it); None: silences only."""
    phone_map: PhoneMap | None = None
    """None: the built-in ARPAbet map."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields of a report: ``reference`` and the tier(s) read."""
        if not self.syllabify_phones:
            return {"reference": SYLLABLE_TIER, "tier": self.tier}
        return {"reference": SYLLABIFIED_PHONES, "tier": self.phone_tier, "phone_tier": self.phone_tier,
                "word_tier": self.word_tier, "phone_map": (self.phone_map or ARPABET).source}


class References(NamedTuple):
    """Reference syllables of one utterance, their (N, 2) seconds, and whether a word tier was used."""

    syllables: list[Interval]
    spans: np.ndarray
    used_word_tier: bool


def read_references(path: str | os.PathLike[str], spec: ReferenceSpec, utt: str | None = None) -> References:
    """The reference syllables of the TextGrid ``path`` as ``spec`` says."""
    if not spec.syllabify_phones:
        sylls, spans = textgrid_syllable_spans(path, spec.tier)
        return References(sylls, spans, False)
    wanted = [spec.phone_tier] + ([spec.word_tier] if spec.word_tier and spec.word_tier != spec.phone_tier else [])
    tiers = read_textgrid(path, tiers=wanted, required=False)
    if spec.phone_tier not in tiers:
        read_textgrid(path, tiers=[spec.phone_tier])  # raises: no such tier, and the tiers found
    words = tiers.get(spec.word_tier) if spec.word_tier else None
    sylls = syllabify(tiers[spec.phone_tier], spec.phone_map, words=words, source=path, utt=utt)
    spans = np.asarray([(iv.start, iv.end) for iv in sylls], dtype=np.float64).reshape(-1, 2)
    return References(sylls, spans, words is not None)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference and matching flags: --tier, --syllabify-phones, --phone-tier, --word-tier,
    --phone-map, --matching."""
    parser.add_argument("--tier", default="syllables", help="TextGrid tier with the reference syllables "
                                                            "(not read with --syllabify-phones)")
    parser.add_argument("--syllabify-phones", action="store_true",
                        help="build the reference syllables from --phone-tier (maximal onsets rising in "
                             "sonority; silences and word boundaries split) instead of reading --tier")
    parser.add_argument("--phone-tier", default="phones", help="phone tier for --syllabify-phones (default phones)")
    parser.add_argument("--word-tier", default="words",
                        help="word tier syllables may not cross, used in TextGrids that have it; "
                             "'none': split at silences only (default words)")
    parser.add_argument("--phone-map", type=Path, default=None,
                        help="'PHONE CLASS' file for a phone set other than ARPAbet (CLASS: vowel|glide|liquid|"
                             "nasal|fricative|affricate|stop; syllabic consonants are vowel)")
    parser.add_argument("--matching", choices=MATCHINGS, default="max",
                        help="max: maximum one-to-one matching (default); greedy: nearest pairs first")


def reference_spec(args: argparse.Namespace) -> ReferenceSpec:
    """The :class:`ReferenceSpec` of parsed :func:`add_scoring_arguments` flags (reads --phone-map)."""
    if args.phone_map is not None and not args.syllabify_phones:
        raise ConfigError(args.phone_map, "--phone-map only applies with --syllabify-phones")
    word_tier = None if args.word_tier.strip().lower() in ("", "none") else args.word_tier
    return ReferenceSpec(tier=args.tier, syllabify_phones=args.syllabify_phones, phone_tier=args.phone_tier,
                         word_tier=word_tier,
                         phone_map=load_phone_map(args.phone_map) if args.phone_map is not None else None)


__all__ = ["References", "ReferenceSpec", "SYLLABIFIED_PHONES", "SYLLABLE_TIER", "add_scoring_arguments",
           "read_references", "reference_spec"]
