"""SLURP entity targets (``targets: entities``): the inline ``[type : filler]`` annotation
survives normalisation, the BPE round trip and decoding, so that the evaluation scores the
words (WER without markup) and the entities (SLU-F1) of each hypothesis."""

from __future__ import annotations


import pytest
import torch

from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError, ManifestError
from speechunits.slu import evaluate as E
from speechunits.slu.config import DecodeConfig, load_cil_config
from speechunits.slu.data import SLUExample
from speechunits.slu.experiment import with_entity_target
from speechunits.slu.slurp_f1 import parse_annotation
from speechunits.slu.tasks import split_classes
from speechunits.slu.tokenizer import normalize_transcript, train_tokenizer

ANNOTATED = ["wake me up at [time : five am] [date : this week]", "play [song_name : let it be] by [artist_name : madonna]",
             "what is the weather in [place_name : paris]", "set an alarm for [time : six thirty pm]"]


def test_normalisation_keeps_only_well_formed_entities() -> None:
    assert normalize_transcript("Wake me up at [Time : Five AM]!") == "wake me up at [ time : five am ]"
    assert normalize_transcript("[place name: New-York]") == "[ place_name : new york ]"
    # no colon, empty parts, stray brackets: dropped like other punctuation
    assert normalize_transcript("a [b] c] [ : d] e:f") == "a b c d e f"
    assert normalize_transcript("Turn the lights on, please.") == "turn the lights on please"


def test_bpe_round_trip_keeps_entities(tmp_path) -> None:
    tok = train_tokenizer(ANNOTATED, ["alarm", "play", "weather"], tmp_path / "bpe.model", vocab_size=120)
    for text in ANNOTATED:
        ids = tok.encode_target("alarm", text)
        back = tok.decode_transcript(ids)
        assert parse_annotation(back) == parse_annotation(normalize_transcript(text))


def test_entity_target_comes_from_the_annotation(tmp_path) -> None:
    ex = SLUExample("u1", "a.flac", "wake me up at five am", "alarm", extra={"sentence_annotation": ANNOTATED[0]})
    assert with_entity_target(ex, tmp_path).transcript == ANNOTATED[0]
    assert with_entity_target(ex, tmp_path).extra["sentence"] == "wake me up at five am"
    with pytest.raises(ManifestError, match="u2.*sentence_annotation"):
        with_entity_target(SLUExample("u2", "b.flac", "hi", "alarm"), tmp_path)
    with pytest.raises(ConfigError, match="corpus=slurp"):
        load_cil_config(None, ["corpus=fsc", "targets=entities", "model.encoder={type: mel_conformer}"])


def test_evaluation_scores_words_and_entities(tmp_path, monkeypatch) -> None:
    tok = train_tokenizer(ANNOTATED, ["alarm", "play"], tmp_path / "bpe.model", vocab_size=120)
    exs = [SLUExample("u0", "x", ANNOTATED[0], "alarm"), SLUExample("u1", "x", ANNOTATED[1], "play")]
    # hypotheses: the first exact, the second with the artist wrong ("madona") and its scenario wrong
    hyps = [tok.encode_target("alarm", ANNOTATED[0]), tok.encode_target("alarm", "play [song_name : let it be] by [artist_name : madona]")]
    monkeypatch.setattr(E, "decode_examples", lambda *a, **k: hyps)
    split = split_classes(["alarm", "play"], 2)
    res = E.evaluate(None, exs, tok, split, None, DecodeConfig(), torch.device("cpu"), entities=True)  # type: ignore[arg-type]
    assert res["accuracy"] == 0.5
    assert res["wer"] == pytest.approx(1 / 14)  # one word of 8 + 6, markup not counted
    assert res["span_f1"] == pytest.approx(0.75)  # 3 of 4 entities exact, on both sides: P = R = 3/4
    assert 0.75 < res["slu_f1"] < 1.0  # the near miss earns partial credit
    plain = E.evaluate(None, exs, tok, split, None, DecodeConfig(), torch.device("cpu"))  # type: ignore[arg-type]
    assert "slu_f1" not in plain and plain["wer"] == res["wer"]
