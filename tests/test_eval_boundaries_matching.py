"""eval-boundaries: max vs greedy matching, and references syllabified from phone tiers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from speechunits.data.alignments import Interval, write_textgrid
from speechunits.eval.boundaries import evaluate_boundaries, match_boundaries, match_pairs, tune_shift

REF = np.array([1.00, 1.06])
PRED = np.array([0.96, 1.02])


def test_greedy_can_be_lower_than_max() -> None:
    # max pairs 0.96-1.00 and 1.02-1.06; greedy first takes the nearest pair 1.02-1.00 (20 ms)
    assert match_pairs(PRED, REF, 0.05, "max").tolist() == [[0, 0], [1, 1]]
    assert match_pairs(PRED, REF, 0.05, "greedy").tolist() == [[1, 0]]
    assert evaluate_boundaries({"u": PRED}, {"u": REF}, matching="max").f1 == pytest.approx(1.0)
    greedy = evaluate_boundaries({"u": PRED}, {"u": REF}, matching="greedy")
    assert (greedy.hits, greedy.precision, greedy.recall) == (1, 0.5, 0.5)


def test_greedy_takes_nearest_first_where_max_sweeps_in_order() -> None:
    # one prediction, two references in reach: both find one hit, greedy takes the nearer one
    pred, ref = np.array([1.03]), np.array([0.99, 1.04])
    assert match_pairs(pred, ref, 0.05, "max").tolist() == [[0, 0]]
    assert match_pairs(pred, ref, 0.05, "greedy").tolist() == [[0, 1]]
    # equal distances: the earlier reference wins
    assert match_pairs(np.array([1.0]), np.array([0.98, 1.02]), 0.05, "greedy").tolist() == [[0, 0]]


@pytest.mark.parametrize("pred, ref", [
    ([0.1, 0.5, 0.9], [0.12, 0.48, 0.95]),  # each boundary has one candidate
    ([0.1, 0.5, 0.9, 1.4], [0.3, 0.51]),  # extra predictions
    ([], [0.2, 0.4]),
    ([0.2, 0.4], []),
    ([1.0, 1.05], [1.0, 1.05]),  # identical lists, candidates overlap
])
def test_matchings_agree(pred: list[float], ref: list[float]) -> None:
    p, r = np.array(pred), np.array(ref)
    assert match_boundaries(p, r, 0.05, "greedy") == match_boundaries(p, r, 0.05, "max")


def test_greedy_is_a_maximal_matching_never_above_max() -> None:
    rng = np.random.default_rng(0)
    lower = 0
    for _ in range(300):
        p = np.sort(rng.uniform(0, 2, rng.integers(0, 12)))
        r = np.sort(rng.uniform(0, 2, rng.integers(0, 12)))
        g = match_pairs(p, r, 0.08, "greedy")
        assert len(set(g[:, 0])) == len(g) == len(set(g[:, 1]))  # one-to-one
        assert all(abs(p[i] - r[j]) <= 0.08 + 1e-9 for i, j in g)
        free_p = set(range(len(p))) - set(g[:, 0].tolist())
        free_r = set(range(len(r))) - set(g[:, 1].tolist())
        assert not any(abs(p[i] - r[j]) <= 0.08 for i in free_p for j in free_r)  # maximal
        best = match_boundaries(p, r, 0.08, "max")
        assert len(g) <= best
        lower += len(g) < best
    assert lower > 0  # the random cases do include ones where greedy loses hits


def test_tune_shift_and_bad_matching() -> None:
    pred, ref = {"u": PRED}, {"u": REF}
    assert tune_shift(pred, ref, [0.0], matching="max")[1].hits == 2
    assert tune_shift(pred, ref, [0.0], matching="greedy")[1].hits == 1
    with pytest.raises(ValueError, match="matching"):
        evaluate_boundaries(pred, ref, matching="hungarian")


# --------------------------------------------------------------------------- the CLI


def _corpus(tmp: Path) -> tuple[Path, Path]:
    """One utterance "actress extra" (MFA-style words/phones tiers) and a unit set of 4 tokens."""
    from speechunits.units import UnitSetWriter

    phones = [("sil", 0.0, 0.1), ("AE1", 0.1, 0.2), ("K", 0.2, 0.26), ("T", 0.26, 0.3), ("R", 0.3, 0.36),
              ("AH0", 0.36, 0.42), ("S", 0.42, 0.5), ("EH1", 0.5, 0.6), ("K", 0.6, 0.66), ("S", 0.66, 0.72),
              ("T", 0.72, 0.78), ("R", 0.78, 0.84), ("AH0", 0.84, 0.96), ("sp", 0.96, 1.2)]
    words = [Interval(0.1, 0.5, "actress"), Interval(0.5, 0.96, "extra")]
    align = tmp / "align" / "spk"
    write_textgrid(align / "u1.TextGrid", {"words": words, "phones": [Interval(a, b, p) for p, a, b in phones]},
                   xmax=1.2)
    units = tmp / "units"
    # syllables: ae k | t r ah s || eh k | s t r ah -> boundaries 0.1 0.26 0.5 0.66 0.96
    with UnitSetWriter(units, kind="syllable", sample_rate=16000, hop=320, vocab_size=4) as w:
        w.add(id="u1", audio="u1.wav", num_samples=19200, sample_rate=16000, starts=[5, 13, 25, 33],
              ends=[13, 25, 33, 48], units=[0, 1, 2, 3])
    return tmp / "align", units


def test_cli_syllabify_phones_and_matching(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechunits.cli import main

    align, units = _corpus(tmp_path)
    out = tmp_path / "r.json"
    assert main(["eval-boundaries", "--units", str(units), "--alignments", str(align), "--syllabify-phones",
                 "--matching", "greedy", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["matching"] == "greedy" and report["reference"] == "syllabified phones"
    assert (report["tier"], report["word_tier"], report["utterances_without_word_tier"]) == ("phones", "words", 0)
    assert report["boundaries"]["f1"] == pytest.approx(100.0)
    assert report["ref_tokens_per_second"] == pytest.approx(4 / 1.2)
    assert report["purity"]["syllable_types"] == 4
    assert "greedy nearest-first" in capsys.readouterr().out

    # without the word tier the run "ae k t r ah s eh k s t r ah" puts s into "s eh k"
    assert main(["eval-boundaries", "--units", str(units), "--alignments", str(align), "--syllabify-phones",
                 "--word-tier", "none", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["matching"] == "max" and report["word_tier"] is None
    assert report["boundaries"]["hits"] == 4 and report["boundaries"]["num_ref"] == 5

    from speechunits.eval.report import write_results

    text = write_results(tmp_path / "RESULTS.md", [("sys", out)], title="t")
    assert "maximum one-to-one matching" in text and "phone tier 'phones' syllabified" in text


def test_cli_reference_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechunits.cli import main

    align, units = _corpus(tmp_path)
    base = ["eval-boundaries", "--units", str(units), "--alignments", str(align)]
    pmap = tmp_path / "vowels.map"
    pmap.write_text("AE1 vowel\n", encoding="utf-8")
    for extra, message in [
        ([], r"u1\.TextGrid: no tier named 'syllables'; tiers found: \['words', 'phones'\]"),
        (["--syllabify-phones", "--phone-tier", "segments"], "no tier named 'segments'"),
        (["--phone-map", str(pmap)], "--phone-map only applies with --syllabify-phones"),
        (["--syllabify-phones", "--phone-map", str(pmap)],
         r"u1\.TextGrid: utterance 'u1': phone 'K' \(0\.2-0\.26 s\) is not in .*vowels\.map"),
    ]:
        assert main(base + extra) != 0
        assert re.search(message, capsys.readouterr().err), (extra, message)


def test_tune_segmentation_takes_the_same_flags() -> None:
    import argparse

    from speechunits.sylber.tune_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "m.pt", "--data", "d", "--alignments", "a", "--syllabify-phones",
                              "--matching", "greedy", "--word-tier", "none"])
    assert (args.syllabify_phones, args.matching, args.phone_tier, args.tier) == (True, "greedy", "phones", "syllables")
