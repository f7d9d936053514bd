"""SLU BPE tokenizer: intents and separator as single tokens, target format, intent parsing."""

from __future__ import annotations

import pytest

from speechunits.errors import CheckpointError, ConfigError
from speechunits.slu.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SEP,
    SLUTokenizer,
    normalize_transcript,
    parse_intent,
    train_tokenizer,
)

TRANSCRIPTS = [
    "Turn on the lights in the kitchen.",
    "Play some music, please",
    "What's the weather like today?",
    "Set an alarm for six in the morning",
    "turn off the music",
    "Send an email to my mother",
    "what's on my calendar tomorrow",
] * 5
INTENTS = ["music", "weather", "alarm", "email", "calendar", "activate_lights_kitchen"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> SLUTokenizer:
    return train_tokenizer(TRANSCRIPTS, INTENTS, tmp_path_factory.mktemp("tok") / "slu.model", vocab_size=80)


def test_specials_and_intents_are_single_tokens(tok: SLUTokenizer) -> None:
    assert tok.intents == sorted(INTENTS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.sp.IdToPiece(tok.sep_id) == SEP
    for intent in INTENTS:
        ids = tok.encode_target(intent, "play some music")
        assert ids[0] == tok.intent_ids[intent] and ids[1] == tok.sep_id
        assert tok.sp.IdToPiece(ids[0]) == f"<intent:{intent}>"
    assert len(set(tok.intent_ids.values()) | {tok.sep_id}) == len(INTENTS) + 1


def test_intent_names_inside_transcripts_stay_words(tok: SLUTokenizer) -> None:
    ids = tok.encode_transcript("turn off the music and check the weather")
    assert tok.sep_id not in ids and not set(ids) & set(tok.intent_ids.values())
    assert tok.sp.DecodeIds(ids) == "turn off the music and check the weather"


def test_target_text_and_round_trip(tok: SLUTokenizer) -> None:
    assert tok.target_text("music", "Play some MUSIC, please!") == "<intent:music> _SEP play some music please"
    ids = tok.encode_target("music", "Play some MUSIC, please!")
    padded = [BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]
    assert tok.decode(padded) == "<intent:music> _SEP play some music please"
    assert tok.decode_transcript(padded) == "play some music please"
    assert tok.parse_intent(padded) == "music"
    assert tok.parse_intent(tok.decode(padded)) == "music"


def test_parse_intent_is_text_before_first_separator(tok: SLUTokenizer) -> None:
    assert parse_intent(f"<intent:alarm> {SEP} set an alarm {SEP} x") == "alarm"
    assert parse_intent("no separator here") == ""
    assert parse_intent(f"weird head {SEP} words") == "weird head"
    # a hypothesis whose first token is an ordinary piece does not parse to a gold intent
    words = tok.encode_transcript("turn on")
    assert tok.parse_intent(words + [tok.sep_id] + words) not in INTENTS
    # eos before the separator: no intent
    assert tok.parse_intent([tok.intent_ids["email"], EOS_ID, tok.sep_id]) == ""


def test_normalize_transcript() -> None:
    assert normalize_transcript("  What's   the Weather,  TODAY?! ") == "what's the weather today"


def test_errors(tok: SLUTokenizer, tmp_path) -> None:
    with pytest.raises(KeyError, match="not in the tokenizer"):
        tok.encode_target("unknown_intent", "hello")
    with pytest.raises(ConfigError, match="without spaces"):
        train_tokenizer(TRANSCRIPTS, ["two words"], tmp_path / "x.model", vocab_size=50)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bad.model"):
        SLUTokenizer(bad)
    plain = tmp_path / "plain.model"
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRANSCRIPTS), model_writer=buf, vocab_size=40, hard_vocab_limit=False, minloglevel=2
    )
    plain.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not an SLU tokenizer"):
        SLUTokenizer(plain)
