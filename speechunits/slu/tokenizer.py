"""SentencePiece BPE for SLU targets ``<intent> _SEP <lower-cased transcript>``.

Each intent and the separator are *user-defined symbols*, hence single tokens. Intents
are stored as ``<intent:NAME>`` pieces rather than bare names: SentencePiece matches
user-defined symbols anywhere in the input, and SLURP scenario names (``music``,
``weather``, ``news``...) are ordinary words of the transcripts. The target's id
sequence is built as ``[intent_id, sep_id] + encode(transcript)`` (no dummy-prefix pieces
between them). Ids: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import atomic_write_bytes
from speechunits.text.sentencepiece_model import load_sentencepiece

PathLike = str | os.PathLike[str]

SEP = "_SEP"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_INTENT_RE = re.compile(r"^<intent:(.+)>$")
_PUNCT_RE = re.compile(r"[^\w\s']")


def intent_piece(intent: str) -> str:
    """The single-token piece of an intent label."""
    return f"<intent:{intent}>"


_ENTITY_RE = re.compile(r"\[([^\[\]:]+):([^\[\]]+)\]")
"""A SLURP inline entity annotation ``[type : filler]`` (the ``sentence_annotation`` field)."""


def _plain(text: str) -> str:
    return " ".join(_PUNCT_RE.sub(" ", text.lower()).split())


def normalize_transcript(text: str) -> str:
    """Lower-case, drop punctuation except apostrophes, collapse whitespace. An entity
    annotation ``[type : filler]`` is kept as ``[ type : filler ]`` (type: lower-case words
    joined by ``_``; filler normalised like the rest), so that SLURP targets with entities
    (``targets: entities``) can be decoded and scored with SLU-F1; any other bracket or colon
    is dropped like other punctuation."""
    out, pos = [], 0
    for m in _ENTITY_RE.finditer(text):
        etype, filler = "_".join(_plain(m.group(1)).split()), _plain(m.group(2))
        if etype and filler:
            out += [_plain(text[pos : m.start()]), f"[ {etype} : {filler} ]"]
            pos = m.end()
    out.append(_plain(text[pos:]))
    return " ".join(part for part in out if part)


def train_tokenizer(
    transcripts: Iterable[str],
    intents: Iterable[str],
    model_path: PathLike,
    vocab_size: int = 1000,
    model_type: str = "bpe",
) -> SLUTokenizer:
    """Train a BPE model on normalised training transcripts; write ``model_path`` atomically.

    ``vocab_size`` is a soft limit (small corpora get a smaller vocabulary rather than an
    error). Intents and :data:`SEP` are user-defined symbols, each one token.
    """
    intent_list = sorted(set(intents))
    if not intent_list:
        raise ConfigError(None, "train_tokenizer needs at least one intent")
    bad = [i for i in intent_list if not i or any(ch.isspace() for ch in i)]
    if bad:
        raise ConfigError(None, f"intent labels must be non-empty and without spaces, found {bad}")
    sentences = [normalize_transcript(t) for t in transcripts]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ConfigError(None, "train_tokenizer needs at least one non-empty transcript")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        user_defined_symbols=[SEP] + [intent_piece(i) for i in intent_list],
        minloglevel=2,
        num_threads=1,
    )
    atomic_write_bytes(model_path, buf.getvalue())
    return SLUTokenizer(model_path)


class SLUTokenizer:
    """A trained SLU SentencePiece model: target building, decoding and intent parsing."""

    def __init__(self, model_path: PathLike) -> None:
        self.path = Path(model_path)
        self.sp = load_sentencepiece(self.path)
        self.sep_id = self.sp.PieceToId(SEP)
        if self.sep_id == self.sp.unk_id():
            raise CheckpointError(self.path, f"model has no {SEP!r} symbol: not an SLU tokenizer")
        self.intent_ids: dict[str, int] = {}
        for i in range(self.sp.GetPieceSize()):
            m = _INTENT_RE.match(self.sp.IdToPiece(i))
            if m:
                self.intent_ids[m.group(1)] = i
        self.id_to_intent = {i: name for name, i in self.intent_ids.items()}

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def intents(self) -> list[str]:
        return sorted(self.intent_ids)

    def target_text(self, intent: str, transcript: str) -> str:
        """``<intent:NAME> _SEP <normalised transcript>``."""
        return f"{intent_piece(intent)} {SEP} {normalize_transcript(transcript)}"

    def encode_transcript(self, transcript: str) -> list[int]:
        return list(self.sp.EncodeAsIds(normalize_transcript(transcript)))

    def encode_target(self, intent: str, transcript: str) -> list[int]:
        """Target ids ``[intent, SEP, transcript pieces...]`` (no bos/eos)."""
        if intent not in self.intent_ids:
            raise KeyError(f"intent {intent!r} is not in the tokenizer ({len(self.intent_ids)} intents)")
        return [self.intent_ids[intent], self.sep_id] + self.encode_transcript(transcript)

    def _strip(self, ids: Sequence[int]) -> list[int]:
        out = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID)]
        if EOS_ID in out:
            out = out[: out.index(EOS_ID)]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (bos/pad dropped, cut at eos) -> target text ``<intent:X> _SEP words``."""
        pieces = []
        for chunk_is_special, chunk in self._chunks(self._strip(ids)):
            pieces.append(self.sp.IdToPiece(chunk[0]) if chunk_is_special else self.sp.DecodeIds(chunk))
        return " ".join(p for p in pieces if p)

    def _chunks(self, ids: list[int]) -> list[tuple[bool, list[int]]]:
        """Split ids into runs of ordinary pieces and single special (intent/SEP) pieces."""
        chunks: list[tuple[bool, list[int]]] = []
        for i in ids:
            if i == self.sep_id or i in self.id_to_intent:
                chunks.append((True, [i]))
            elif chunks and not chunks[-1][0]:
                chunks[-1][1].append(i)
            else:
                chunks.append((False, [i]))
        return chunks

    def decode_transcript(self, ids: Sequence[int]) -> str:
        """The words after the first separator (the whole decoding if there is none)."""
        ids = self._strip(ids)
        if self.sep_id in ids:
            ids = ids[ids.index(self.sep_id) + 1 :]
        return " ".join(self.decode(ids).split())

    def parse_intent(self, ids_or_text: Sequence[int] | str) -> str:
        """The predicted intent: everything before the first separator, as a string.

        ``<intent:X>`` is unwrapped to ``X``; anything else before the separator is
        returned as decoded (and will not equal a gold label). No separator: ``""``.
        """
        return parse_intent(ids_or_text if isinstance(ids_or_text, str) else self.decode(ids_or_text))


def parse_intent(text: str) -> str:
    """Text before the first :data:`SEP` (stripped, ``<intent:X>`` -> ``X``); ``""`` without one."""
    if SEP not in text:
        return ""
    head = text.split(SEP, 1)[0].strip()
    m = _INTENT_RE.match(head)
    return m.group(1) if m else head
