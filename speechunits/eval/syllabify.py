"""Reference syllables from a phone tier: maximal onsets that rise in sonority.

Used by ``eval-boundaries --syllabify-phones`` when an alignment has phones (MFA's
``phones`` tier) but no syllable tier.

Rules
-----
* Every phone has a sonority class: ``stop < affricate < fricative < nasal < liquid <
  glide < vowel``. Vowels, and syllabic consonants mapped to ``vowel`` (ARPAbet ``er``,
  ``axr``, ``el``, ``em``, ``en``, ``eng``), are the nuclei: one syllable each.
* Silences (:data:`speechunits.data.alignments.SILENCE_LABELS`: ``""``, ``sil``, ``sp``,
  ``spn`` ...) split the tier into runs, and so do word boundaries when a word tier is
  given (each phone belongs to the word holding its midpoint): no syllable crosses either.
  Each run is syllabified on its own; a run without a nucleus is one syllable.
* Consonants before a run's first nucleus are its onset, those after the last its coda.
  Between two nuclei, the next syllable's onset is the longest tail of the consonant
  cluster that is a legal onset; the rest closes the previous syllable (maximal onset).
  A legal onset rises strictly in sonority, except that ``s`` may precede a stop
  (``s t r``, ``s k w``). With the built-in ARPAbet map it must also be an English onset:
  one consonant other than ``ng``, or one of :data:`ENGLISH_CLUSTERS` (so ``k s`` in
  "axis" stays split: ``ae k | s ah s``).
* Syllable labels are the phone labels as written in the tier (stress digits kept),
  joined by single spaces; spans run from the first phone's start to the last one's end.

Phone sets
----------
The built-in map is ARPAbet (CMUdict's 39 phones plus TIMIT's ``ax axr ix ux ax-h em en
eng el nx dx q hv wh``), matched case-insensitively with stress digits dropped.
:func:`load_phone_map` reads any other set from a ``PHONE CLASS`` text file; its phones
match exactly (case-sensitively), or after dropping trailing stress digits.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechunits.data.alignments import Interval, is_silence
from speechunits.errors import AlignmentError, ConfigError

SONORITY: dict[str, int] = {
    "stop": 1, "affricate": 2, "fricative": 3, "nasal": 4, "liquid": 5, "glide": 6, "vowel": 7,
}
"""Sonority rank of each phone class (higher: more sonorous); ``vowel`` marks nuclei."""

_ARPABET_CLASSES: dict[str, tuple[str, ...]] = {
    "vowel": ("aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw",
              "ax", "axr", "ix", "ux", "ax-h", "el", "em", "en", "eng"),
    "glide": ("w", "y", "wh"),
    "liquid": ("l", "r"),
    "nasal": ("m", "n", "ng", "nx"),
    "fricative": ("f", "v", "th", "dh", "s", "z", "sh", "zh", "hh", "hv"),
    "affricate": ("ch", "jh"),
    "stop": ("p", "b", "t", "d", "k", "g", "dx", "q"),
}

ENGLISH_CLUSTERS: frozenset[tuple[str, ...]] = frozenset(tuple(c.split()) for c in (
    "p r", "p l", "p y", "b r", "b l", "b y", "t r", "t w", "d r", "d w", "k r", "k l", "k w", "k y",
    "g r", "g l", "g w", "g y", "f r", "f l", "f y", "v y", "th r", "th w", "sh r", "s l", "s w",
    "s m", "s n", "s p", "s t", "s k", "hh y", "m y",
    "s p r", "s p l", "s p y", "s t r", "s k r", "s k w", "s k l", "s k y",
))
"""Consonant clusters (ARPAbet) allowed as English onsets besides single consonants."""

_NO_ONSET = frozenset({"ng", "eng"})
_STRESS = re.compile(r"[0-9]+$")


@dataclass(frozen=True)
class PhoneMap:
    """Phone label -> sonority class, and how labels are matched."""

    classes: Mapping[str, str]
    source: str
    """Where the map comes from (a file path, or "the built-in ARPAbet map"), for messages."""
    case_sensitive: bool = True
    english_onsets: bool = False
    """Also require onsets to be English onsets (the built-in ARPAbet map only)."""

    def key(self, label: str) -> str | None:
        """The map key of a tier label (exact, then without trailing stress digits), or None."""
        text = label.strip() if self.case_sensitive else label.strip().lower()
        if text in self.classes:
            return text
        bare = _STRESS.sub("", text)
        return bare if bare and bare in self.classes else None


ARPABET = PhoneMap({p: cls for cls, phones in _ARPABET_CLASSES.items() for p in phones},
                   "the built-in ARPAbet map", case_sensitive=False, english_onsets=True)
"""The default phone map."""


def load_phone_map(path: str | os.PathLike[str]) -> PhoneMap:
    """Read ``PHONE CLASS`` lines (``#`` comments and blank lines skipped) into a :class:`PhoneMap`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(p, f"cannot read the phone map ({err})") from err
    classes: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(p, f"expected 'PHONE CLASS', found {len(fields)} field(s): {raw.strip()!r}", lineno)
        phone, cls = fields[0], fields[1].lower()
        if cls not in SONORITY:
            raise ConfigError(p, f"unknown class {fields[1]!r} for phone {phone!r}: expected one of "
                                 f"{'|'.join(SONORITY)}", lineno)
        if classes.get(phone, cls) != cls:
            raise ConfigError(p, f"phone {phone!r} is given two classes ({classes[phone]} and {cls})", lineno)
        classes[phone] = cls
    if not classes:
        raise ConfigError(p, "the phone map is empty: expected 'PHONE CLASS' lines")
    return PhoneMap(classes, str(p))


def _legal_onset(keys: Sequence[str], classes: Sequence[str], english: bool) -> bool:
    """True when the consonants ``keys`` (map keys, with their classes) may start a syllable."""
    if len(keys) <= 1:
        return not (english and keys and keys[0] in _NO_ONSET)
    if english and tuple(keys) not in ENGLISH_CLUSTERS:
        return False
    ranks = [SONORITY[c] for c in classes]
    first = 1 if keys[0].lower() == "s" and classes[1] == "stop" else 0  # s + stop clusters
    return all(a < b for a, b in zip(ranks[first:], ranks[first + 1:]))


def _syllabify_run(run: Sequence[Interval], keys: Sequence[str], classes: Sequence[str],
                   english: bool) -> list[Interval]:
    """Syllables of one run of phones without silence or word boundary inside."""
    nuclei = [i for i, c in enumerate(classes) if c == "vowel"]
    starts = [0]
    for prev, nxt in zip(nuclei, nuclei[1:]):
        lo = prev + 1
        k = next(k for k in range(lo, nxt + 1) if _legal_onset(keys[k:nxt], classes[k:nxt], english))
        starts.append(k)
    bounds = starts + [len(run)]
    return [Interval(run[a].start, run[b - 1].end, " ".join(iv.label.strip() for iv in run[a:b]))
            for a, b in zip(bounds, bounds[1:])]


def _word_index(words: Sequence[Interval], word_starts: Sequence[float], t: float) -> int | None:
    i = bisect.bisect_right(word_starts, t) - 1
    return i if i >= 0 and t < words[i].end else None


def syllabify(
    phones: Sequence[Interval],
    phone_map: PhoneMap | None = None,
    *,
    words: Sequence[Interval] | None = None,
    source: str | os.PathLike[str] | None = None,
    utt: str | None = None,
) -> list[Interval]:
    """Syllables of a phone tier (silence intervals dropped), in time order.

    ``phone_map`` defaults to :data:`ARPABET`. ``words`` (a word tier; silences ignored)
    keeps syllables inside words. ``source``/``utt`` name the alignment file and utterance
    in the AlignmentError raised for a phone the map does not know.
    """
    pmap = phone_map or ARPABET
    speech_words = sorted((w for w in words or () if not is_silence(w.label)), key=lambda w: w.start)
    word_starts = [w.start for w in speech_words]
    out: list[Interval] = []
    run: list[Interval] = []
    keys: list[str] = []
    classes: list[str] = []
    word: int | None = None

    def flush() -> None:
        if run:
            out.extend(_syllabify_run(run, keys, classes, pmap.english_onsets))
            run.clear()
            keys.clear()
            classes.clear()

    for iv in phones:
        if is_silence(iv.label):
            flush()
            continue
        key = pmap.key(iv.label)
        if key is None:
            who = f"utterance {utt!r}: " if utt else ""
            raise AlignmentError(source, f"{who}phone {iv.label.strip()!r} ({iv.start:g}-{iv.end:g} s) is not in "
                                         f"{pmap.source}; list it with its class in a --phone-map file "
                                         f"('PHONE CLASS' lines, CLASS one of {'|'.join(SONORITY)})")
        if speech_words:
            w = _word_index(speech_words, word_starts, (iv.start + iv.end) / 2)
            if run and w != word:
                flush()
            word = w
        run.append(iv)
        keys.append(key)
        classes.append(pmap.classes[key])
    flush()
    return out


__all__ = ["ARPABET", "ENGLISH_CLUSTERS", "SONORITY", "PhoneMap", "load_phone_map", "syllabify"]
