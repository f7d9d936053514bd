"""Minimal-pair probes in the style of ZeroSpeech 2021 sWUGGY (lexical) and sBLIMP (syntactic).

A spoken language model is probed by asking which member of a minimal pair it finds more
probable. The pairs here are built over the synthetic corpus's own vocabulary and grammar
(:mod:`speechunits.data.synth.text`), so an LM trained on that corpus has seen every real word
and every grammatical construction: a probe then measures what the LM learned, not the corpus
coverage. Everything is decided by the seed (and, for the lexical probe, by the espeak-ng
version that verifies the non-words).

**Lexical pairs** (word / non-word). The real words are the single lower-case words of
``vocab.json`` (every category but names and the multi-word time phrases) with 1-3 syllables
(vowels in their espeak-ng phonemes). A non-word is made by *orthographic cluster
substitution*: the word's spelling is split into consonant-letter clusters and vowel-letter
groups; a cluster takes a position class, ``onset`` (word-initial or word-medial: English
syllabifies a medial consonant into the next onset) or ``coda`` (word-final, or before a final
silent ``e``), and is replaced by a *legal English cluster of the same class and length that
differs in exactly one letter* (:data:`ONSETS`, :data:`CODAS`), so the syllable structure is
kept. A candidate is kept only when espeak-ng confirms the rule on phonemes: the non-word has
as many phonemes as the word, the same vowels (stress marks included) at the same positions,
and exactly one phoneme differs, a consonant. Candidates that are words of ``vocab.json``
of Festival's CMU lexicon or of :data:`COMMON_WORDS` (English words that lexicon leaves to its
letter-to-sound rules) are dropped. Festival reads the spelling with its own letter-to-sound
rules; espeak-ng is the check that the spelling says what is meant.

**Syntactic pairs** (grammatical / ungrammatical), four types from templates of the corpus
grammar: ``agreement`` (``numeral_plural``: "two apples" / "two apple"; ``one_singular``:
"one book" / "one books"), ``determiner_noun`` (``dropped``: the determiner is left out;
``doubled``: a second determiner is added), ``argument_structure``
(``intransitive_with_object``: a transitive verb with its object / a strictly intransitive
verb with the same object) and ``word_order`` (``adjective_noun``: "the old man" / "the man
old"; ``subject_verb``: "Anna smiled" / "smiled Anna"). The members differ by one word
(substituted, dropped or added) or by the swap of two adjacent words.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from speechunits.data.synth.festival import lexicon_words
from speechunits.data.synth.text import fix_articles, generate_sentence, number_words, transcript_words, vocabulary
from speechunits.errors import ConfigError
from speechunits.text.espeak import Espeak

LANGUAGE = "en-us"
"""The espeak-ng language that verifies the non-words (and gives the ``phones`` of gold.csv)."""

LEXICAL_CATEGORIES = ("nouns", "adjectives", "places", "plurals", "verbs_transitive", "verbs_base",
                      "verbs_intransitive", "adverbs")
"""``vocab.json`` categories whose words are probed (names and multi-word times are not)."""

MAX_SYLLABLES = 3

ONSETS = frozenset(
    "b d f k l m n p r s t v z "
    "bl br cl cr dr fl fr gl gr pl pr sc sk sl sm sn sp st sw tr tw".split()
)
"""Legal English onsets (spelling) a cluster may become; ``c``/``g``/``h``/``w``/``y`` alone are left
out because their sound depends on the next letter or they glide into the vowel."""

CODAS = frozenset(
    "b d f k l m n p s t "
    "ft ld lf lk lm lp lt mp nd nk nt pt sk sp st".split()
)
"""Legal English codas (spelling) a cluster may become."""

COMMON_WORDS = frozenset("""
a about after all also an and any are as at back bad bag bake ball band bank bar bark base bat bath bed bell belt
best big bill bit black blind block blow blue boat body bone boot born both bottle box boy bread break bring brown
build burn but buy by cake call came camp can cap car card care cart case cast cat cave cell chair clean clock close
cloud coat cold come cook cool cost could cup cut dark day dead deal dear deep desk did dig dish do dog doll done door
down draw dream dress drink drive drop dry duck dust each east eat egg end even ever face fact fall far farm fast fat
feel feet fell felt few fill find fine fire fish five flat floor fly fold food foot for form four free from full fun
game gate gave get gift girl give glad go gold gone good got gray green grow had hair half hall hand hard has hat have
he head hear heat held help her here high hill him his hold hole home hope horse hot hour how hunt ice if in ink into
is it jump just keep kept kid kind king kiss kit lake lamp land last late lay lead leaf left leg less let lid lie
life lift like line lip list live load lock long look lost lot loud love low mad made mail make man many map mark mat
may me meal meet men mile milk mind mine miss mist mix moon more most mud must my nail name near neck need nest net
new next nice night no nod nose not note now nut of off old on one only open or our out over pack page paid pail pain
pair pan park part pass past path pay pen pet pick pig pin pink pit place plan plant play pond pool poor pot pull
push put rain ran rat read real red rest rice rich ride ring rock rod roll roof room root rope rose run sad said sail
salt same sand sat save saw say sea seat see seed sell send set shed ship shop short show sick side sing sink sit six
size skin sky sleep slow small snow so soft soil some song soon sort sound south spot stand star stay step stick
still stop store street such sun sure tail take talk tall tank tap task tell ten tent than that the them then there
they thin this tie till time tip to told took top town toy tree trip true try tub turn two up us use van vest very
wall want warm was wash way we well went west wet what when who why wide will win wind wise wish with wood word work
yard year yes yet you
dimple locket glower cleaved whiskered rickets gravelled cas clealed
""".split())
"""Common English words a substitution might land on (besides ``vocab.json``): never used as non-words."""

VOWEL_CHARS = set("aeiouæɑɒɐəɚɛɜɝɪɔʊʌʏøœɘɵɤɯyɨʉᵻ") | {"\u0329"}  # U+0329: syllabic consonant
"""A phoneme holding one of these is a vowel (espeak-ng keeps stress marks on the vowel)."""

SYNTACTIC_TYPES = ("agreement", "determiner_noun", "argument_structure", "word_order")
STRICTLY_INTRANSITIVE = ("waited", "smiled", "laughed", "slept", "arrived", "listened", "paused")
"""Intransitive verbs of ``vocab.json`` that take no direct object (``walked``/``sang``/``returned`` can)."""


@dataclass(frozen=True)
class LexicalPair:
    """A real word and its non-word, with their espeak-ng phonemes and the word's corpus frequency."""

    id: str
    word: str
    nonword: str
    word_phones: tuple[str, ...]
    nonword_phones: tuple[str, ...]
    frequency: int
    """Occurrences of the word in :data:`FREQUENCY_SENTENCES` sentences of the corpus generator."""


@dataclass(frozen=True)
class SyntacticPair:
    """A grammatical sentence and its ungrammatical minimal counterpart."""

    id: str
    type: str
    subtype: str
    grammatical: str
    ungrammatical: str


FREQUENCY_SENTENCES = 2000
CANDIDATES_PER_WORD = 8


# --------------------------------------------------------------------------- lexical


def is_vowel(phone: str) -> bool:
    return any(c in VOWEL_CHARS for c in phone)


def probe_words() -> list[str]:
    """The real words probed: single lower-case words of :data:`LEXICAL_CATEGORIES`, sorted, unique."""
    vocab = vocabulary()
    return sorted({w for cat in LEXICAL_CATEGORIES for w in vocab[cat] if re.fullmatch(r"[a-z]+", w)})


def vocabulary_words() -> frozenset[str]:
    """Every word of ``vocab.json`` in lower case (multi-word entries split)."""
    return frozenset(w.lower() for words in vocabulary().values() for entry in words for w in transcript_words(entry))


def _clusters(word: str) -> list[tuple[int, int, str]]:
    """Consonant-letter clusters of a spelling as (start, end, class); ``y`` after a letter is a vowel."""
    out = []
    for m in re.finditer(r"[^aeiouy]+|^y", word):
        start, end = m.span()
        silent_e = word[end:] == "e"
        position = "coda" if end == len(word) or silent_e else "onset"
        out.append((start, end, position))
    return out


def nonword_candidates(word: str) -> list[str]:
    """Spellings that replace one cluster of ``word`` by a legal cluster of its class differing in one letter.

    The final cluster of a word ending in ``s`` or ``ed`` is an inflection ("cookies", "carried"):
    substituting it would give another inflected form ("cookied", "carries"), so it is kept.
    """
    out = set()
    inflected = word.endswith(("s", "ed"))
    for start, end, position in _clusters(word):
        if inflected and end == len(word):
            continue
        cluster = word[start:end]
        table = ONSETS if position == "onset" else CODAS
        if cluster not in table:
            continue  # only legal clusters are rewritten: a digraph ("th", "ck") is not a cluster of the table
        for other in table:
            if len(other) == len(cluster) and sum(a != b for a, b in zip(other, cluster)) == 1:
                out.add(word[:start] + other + word[end:])
    return sorted(out)


def differs_by_one_consonant(word_phones: Sequence[str], nonword_phones: Sequence[str]) -> bool:
    """The phoneme rule: same length, same vowels at the same places, exactly one consonant differs."""
    if len(word_phones) != len(nonword_phones):
        return False
    diff = [i for i, (a, b) in enumerate(zip(word_phones, nonword_phones)) if a != b]
    if len(diff) != 1:
        return False
    i = diff[0]
    return not is_vowel(word_phones[i]) and not is_vowel(nonword_phones[i])


def _flat(words: list[list[str]]) -> tuple[str, ...]:
    return tuple(p for w in words for p in w)


def word_frequencies(n_sentences: int = FREQUENCY_SENTENCES) -> Counter[str]:
    """Word counts (lower case) of ``n_sentences`` sentences of the corpus generator (a fixed seed)."""
    rng = random.Random("speechunits.probes:frequency")
    counts: Counter[str] = Counter()
    for _ in range(n_sentences):
        counts.update(w.lower() for w in transcript_words(generate_sentence(rng).normalized))
    return counts


Candidates = dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...]]]]


@functools.lru_cache(maxsize=2)
def lexical_candidates(language: str = LANGUAGE) -> Candidates:
    """The verified non-words of every probed word: {word: [(nonword, word phones, nonword phones), ...]}.

    At most :data:`CANDIDATES_PER_WORD` spellings per word (a fixed draw) go to espeak-ng, so
    the check costs a few seconds; the result is cached per process.
    """
    espeak = Espeak(language, workers=1)
    words = probe_words()
    spellings = {w: nonword_candidates(w) for w in words}
    excluded = vocabulary_words() | COMMON_WORDS
    excluded |= lexicon_words(sorted({c for cs in spellings.values() for c in cs} - excluded))
    cands = {}
    for w in words:
        kept = [c for c in spellings[w] if c not in excluded]
        random.Random(f"probes:candidates:{w}").shuffle(kept)
        cands[w] = sorted(kept[:CANDIDATES_PER_WORD])
    phrases = words + [c for w in words for c in cands[w]]
    phones = dict(zip(phrases, (_flat(p) for p in espeak.phonemize(phrases))))
    out: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
    for w in words:
        wp = phones[w]
        if not 1 <= sum(map(is_vowel, wp)) <= MAX_SYLLABLES:
            continue
        good = [(c, wp, phones[c]) for c in cands[w] if differs_by_one_consonant(wp, phones[c])]
        if good:
            out[w] = good
    return out


def lexical_pairs(num_pairs: int, seed: int = 0, language: str = LANGUAGE) -> list[LexicalPair]:
    """``num_pairs`` word/non-word pairs, ids ``"1"``..; every word is used once before any is reused."""
    if num_pairs < 1:
        raise ConfigError(None, f"--num-pairs must be >= 1, found {num_pairs}")
    cands = lexical_candidates(language)
    total = sum(map(len, cands.values()))
    if num_pairs > total:
        raise ConfigError(None, f"--num-pairs {num_pairs}: the vocabulary gives only {total} lexical pairs")
    rng = random.Random(f"{seed}:probes:lexical")
    pools = {w: rng.sample(c, len(c)) for w, c in sorted(cands.items())}
    freq = word_frequencies()
    pairs: list[LexicalPair] = []
    while len(pairs) < num_pairs:
        order = [w for w in sorted(pools) if pools[w]]
        rng.shuffle(order)
        for w in order[: num_pairs - len(pairs)]:
            nonword, wp, np_ = pools[w].pop()
            pairs.append(LexicalPair(str(len(pairs) + 1), w, nonword, wp, np_, freq[w]))
    return pairs


# --------------------------------------------------------------------------- syntactic


def _sentence(words: Sequence[str]) -> str:
    """Words (some may be phrases) -> a sentence: a/an fixed, capitalised, final period."""
    text = " ".join(fix_articles(" ".join(words).split(" ")))
    return text[0].upper() + text[1:] + "."


def _pick(rng: random.Random, slot: str, exclude: Sequence[str] = ()) -> str:
    return rng.choice([w for w in vocabulary()[slot] if w not in exclude])


def _syntactic_words(kind: str, rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(subtype, grammatical words, ungrammatical words) of one pair of type ``kind``."""
    name, vt, place, prep = _pick(rng, "names"), _pick(rng, "verbs_transitive"), _pick(rng, "places"), \
        _pick(rng, "prepositions")
    tail = [prep, "the", place]
    if kind == "agreement":
        plurals = vocabulary()["plurals"]
        if rng.random() < 0.5:
            plural = rng.choice(plurals)
            num = number_words(rng.randint(2, 99))
            return "numeral_plural", [name, vt, num, plural, *tail], [name, vt, num, plural[:-1], *tail]
        noun = rng.choice([n for n in vocabulary()["nouns"] if n + "s" in plurals])
        return "one_singular", [name, vt, "one", noun, *tail], [name, vt, "one", noun + "s", *tail]
    if kind == "determiner_noun":
        det, adj, noun, time = (_pick(rng, "determiners"), _pick(rng, "adjectives"), _pick(rng, "nouns"),
                                _pick(rng, "times"))
        good = ["we", vt, det, adj, noun, time]
        if rng.random() < 0.5:
            return "dropped", good, ["we", vt, adj, noun, time]
        return "doubled", good, ["we", vt, det, _pick(rng, "determiners", exclude=(det, "a")), adj, noun, time]
    if kind == "argument_structure":
        det, noun = _pick(rng, "determiners"), _pick(rng, "nouns")
        vi = rng.choice(STRICTLY_INTRANSITIVE)
        return "intransitive_with_object", [name, vt, det, noun, *tail], [name, vi, det, noun, *tail]
    if kind == "word_order":
        vi = _pick(rng, "verbs_intransitive")
        if rng.random() < 0.5:
            time, adj, noun = _pick(rng, "times"), _pick(rng, "adjectives"), _pick(rng, "nouns")
            return ("adjective_noun", [time + ",", "the", adj, noun, vi, *tail],
                    [time + ",", "the", noun, adj, vi, *tail])
        adv, time = _pick(rng, "adverbs"), _pick(rng, "times")
        return "subject_verb", [name, vi, adv, time], [vi, name, adv, time]
    raise ValueError(f"unknown syntactic type {kind!r}; known: {SYNTACTIC_TYPES}")


def syntactic_pairs(num_pairs: int, seed: int = 0) -> list[SyntacticPair]:
    """``num_pairs`` distinct grammatical/ungrammatical pairs, ids ``"1"``.., types cycled in :data:`SYNTACTIC_TYPES`."""
    if num_pairs < 1:
        raise ConfigError(None, f"--num-pairs must be >= 1, found {num_pairs}")
    rng = random.Random(f"{seed}:probes:syntactic")
    pairs: list[SyntacticPair] = []
    seen: set[str] = set()
    attempts = 0
    while len(pairs) < num_pairs:
        attempts += 1
        if attempts > 100 * (num_pairs + 10):
            raise ConfigError(None, f"--num-pairs {num_pairs}: could not draw that many distinct syntactic pairs")
        kind = SYNTACTIC_TYPES[len(pairs) % len(SYNTACTIC_TYPES)]
        subtype, good, bad = _syntactic_words(kind, rng)
        good_text, bad_text = _sentence(good), _sentence(bad)
        if good_text in seen:
            continue
        seen.add(good_text)
        pairs.append(SyntacticPair(str(len(pairs) + 1), kind, subtype, good_text, bad_text))
    return pairs


__all__ = [
    "CANDIDATES_PER_WORD",
    "CODAS",
    "COMMON_WORDS",
    "LANGUAGE",
    "ONSETS",
    "STRICTLY_INTRANSITIVE",
    "SYNTACTIC_TYPES",
    "LexicalPair",
    "SyntacticPair",
    "differs_by_one_consonant",
    "is_vowel",
    "lexical_candidates",
    "lexical_pairs",
    "nonword_candidates",
    "probe_words",
    "syntactic_pairs",
    "vocabulary_words",
    "word_frequencies",
]
