"""The judge's vocabulary, CTC decoders, error rates and features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.data.batching import pack_by_frames
from speechunits.asr.decode import ctc_decode, greedy_decode, prefix_beam_search
from speechunits.asr.fbank import FbankConfig, log_fbank
from speechunits.asr.vocab import BASE_CHARS, CharVocab, normalize_text
from speechunits.eval.error_rates import error_rates


def test_vocab_round_trip_and_extra_chars() -> None:
    vocab = CharVocab.from_texts(["hello  world", "IT'S", "naïve-ish"])
    assert vocab.chars[: len(BASE_CHARS)] == list(BASE_CHARS)
    assert set(vocab.chars[len(BASE_CHARS):]) == {"Ï", "-"}
    assert len(vocab) == len(vocab.chars) + 1  # blank is id 0
    ids = vocab.encode("  It's a naïve-ish   world ")
    assert 0 not in ids
    assert vocab.decode(ids) == "IT'S A NAÏVE-ISH WORLD"
    assert CharVocab.from_list(vocab.to_list()) == vocab
    assert vocab.encode("a#b") == vocab.encode("ab") and vocab.unknown("a#b") == {"#"}
    assert normalize_text(" a\tb\n") == "A B"


def _log_probs(rows: list[list[float]]) -> np.ndarray:
    p = np.asarray(rows, dtype=np.float64)
    return np.log(p / p.sum(axis=1, keepdims=True))


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    # best path: A A - A B B -  ->  A A B
    rows = [[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8], [.1, .1, .8], [.8, .1, .1]]
    assert greedy_decode(_log_probs(rows)) == [1, 1, 2]
    assert greedy_decode(torch.from_numpy(_log_probs(rows)).float()) == [1, 1, 2]
    assert prefix_beam_search(_log_probs(rows), beam=4) == [1, 1, 2]


def test_beam_finds_the_more_probable_labelling_that_greedy_misses() -> None:
    # each frame: blank .4, A .35, B .25. Best path "--" -> "" has p=.16, but "A" sums
    # AA + A- + -A = .1225 + .14 + .14 = .4025
    lp = _log_probs([[.4, .35, .25], [.4, .35, .25]])
    assert greedy_decode(lp) == []
    assert prefix_beam_search(lp, beam=4) == [1]
    assert ctc_decode(lp, beam=1) == [] and ctc_decode(lp, beam=4) == [1]


def test_beam_search_total_probability_is_exact_on_a_small_case() -> None:
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(3), size=4))
    # brute force over all 3^4 paths
    totals: dict[tuple[int, ...], float] = {}
    for path in np.ndindex(*(3,) * 4):
        labels, prev = [], 0
        for k in path:
            if k != prev and k != 0:
                labels.append(k)
            prev = k
        p = math.exp(sum(lp[t, k] for t, k in enumerate(path)))
        totals[tuple(labels)] = totals.get(tuple(labels), 0.0) + p
    best = max(totals, key=totals.get)  # type: ignore[arg-type]
    assert tuple(prefix_beam_search(lp, beam=50, prune=-1e9)) == best


def test_beam_rejects_bad_width_and_shape() -> None:
    with pytest.raises(ValueError):
        prefix_beam_search(np.zeros((2, 3)), beam=0)
    with pytest.raises(ValueError):
        greedy_decode(np.zeros(3))


def test_error_rates_percent_via_jiwer() -> None:
    assert error_rates(["AB C", "X"], ["AB C", "X"]) == {"cer": 0.0, "wer": 0.0}
    r = error_rates(["AB C", "X"], ["AB", "XY"])
    assert r["cer"] == pytest.approx(60.0) and r["wer"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        error_rates(["A"], [])
    with pytest.raises(ValueError):
        error_rates([""], ["A"])


def test_fbank_shape_normalisation_and_resampling() -> None:
    cfg = FbankConfig()
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000).astype(np.float32) * 0.1
    feats = log_fbank(wave, 16000, cfg)
    assert feats.shape == (98, 80) and feats.dtype == torch.float32
    assert feats.mean(0).abs().max() < 1e-4 and (feats.std(0, unbiased=False) - 1).abs().max() < 1e-2
    from speechunits.audio import resample

    at8k = log_fbank(resample(wave, 16000, 8000), 8000, cfg)
    assert at8k.shape[1] == 80 and abs(at8k.shape[0] - 98) <= 1
    assert log_fbank(np.zeros(10, dtype=np.float32), 16000, cfg).shape == (1, 80)  # shorter than a window


def test_pack_by_frames_respects_the_budget() -> None:
    lengths = [10, 20, 30, 40, 100, 5]
    order = sorted(range(6), key=lambda i: lengths[i])
    batches = pack_by_frames(order, lengths, max_frames=60)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 60
    assert [4] in batches  # longer than the budget: alone
    assert all(len(b) <= 2 for b in pack_by_frames(order, lengths, 10_000, max_utts=2))
