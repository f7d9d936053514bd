"""SLURP's span-F1 / SLU-F1 (speechunits.slu.slurp_f1) on hand-computed cases."""

from __future__ import annotations

import pytest

from speechunits.slu.slurp_f1 import char_distance, parse_annotation, slu_f1, word_distance


def test_parse_annotation() -> None:
    text, ents = parse_annotation("wake me up at [time : five am]  [date : this week]")
    assert text == "wake me up at five am this week"
    assert ents == [("time", "five am"), ("date", "this week")]
    assert parse_annotation("play [song_name:let it be]") == ("play let it be", [("song_name", "let it be")])
    assert parse_annotation("turn on the radio") == ("turn on the radio", [])


@pytest.mark.parametrize("hyp, text", [
    ("set [time five am] now", "set time five am now"),           # no colon: no entity
    ("set [time : five am now", "set time : five am now"),        # unmatched bracket
    ("set ] [ : five] [time : ]", "set : five time :"),           # empty type, empty filler
    ("[[time : five] : six]", "five : six"),                      # nested: the inner span only
])
def test_parse_annotation_never_raises_on_hypotheses(hyp: str, text: str) -> None:
    got_text, ents = parse_annotation(hyp)
    assert got_text == text
    assert ents == ([("time", "five")] if hyp.startswith("[[") else [])


def test_distances() -> None:
    assert word_distance("five am", "five pm") == 0.5
    assert word_distance("noon", "at five in the morning") == 5.0  # WER can exceed 1
    assert char_distance("five am", "five pm") == pytest.approx(1 / 7)
    assert char_distance("ab", "abcd") == 0.5  # over the longer string
    assert word_distance("", "") == char_distance("", "") == 0.0


def test_soft_match_one_wrong_word() -> None:
    m = slu_f1([[("time", "five am")]], [[("time", "five pm")]])
    # word: TP 1, FP = FN = 1/2 -> P = R = 2/3; char: TP 1, FP = FN = 1/7 -> P = R = 7/8
    assert m["word_f1"] == pytest.approx(2 / 3)
    assert m["char_f1"] == pytest.approx(7 / 8)
    # SLU-F1 sums the two confusion counts: TP 2, FP = FN = 1/2 + 1/7 = 9/14 -> 28/37
    assert m["slu_f1"] == pytest.approx(28 / 37)
    assert m["slu_precision"] == m["slu_recall"] == pytest.approx(28 / 37)
    assert m["span_f1"] == 0.0


def test_type_mismatch_counts_fully_and_reference_is_lower_cased() -> None:
    m = slu_f1([[("date", "today")]], [[("time", "today")]])
    assert m == {"slu_f1": 0.0, "slu_precision": 0.0, "slu_recall": 0.0, "word_f1": 0.0, "char_f1": 0.0, "span_f1": 0.0}
    assert slu_f1([[("person", "John")]], [[("person", "john")]])["span_f1"] == 1.0


def test_closest_filler_of_the_type_is_matched() -> None:
    # matching "mary" to the first "person" (john) would give d > 0
    m = slu_f1([[("person", "john"), ("person", "mary")]], [[("person", "mary")]])
    for key in ("word_f1", "char_f1", "slu_f1", "span_f1"):
        assert m[key] == pytest.approx(2 / 3)  # P 1, R 1/2


def test_micro_average_over_utterances() -> None:
    refs = [[("time", "noon")], [("date", "today"), ("place_name", "paris")], []]
    hyps = [[("time", "at five in the morning")], [("date", "today")], [("person", "anna")]]
    m = slu_f1(refs, hyps)
    # word: TP 2, FP 5 + 0 + 1 = 6, FN 5 + 1 = 6 -> F1 = 2/8
    assert m["word_f1"] == pytest.approx(0.25)
    # exact: TP 1 (today), FP 2, FN 2 -> P = R = 1/3
    assert m["span_f1"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 references but 3 hypotheses"):
        slu_f1(refs[:2], hyps)
