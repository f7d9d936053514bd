"""The Kneser-Ney n-gram LM: a proper distribution, the Scorer protocol, learning, storage, lm-ngram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from speechunits.cli import main
from speechunits.errors import CheckpointError
from speechunits.lm.ngram import NGramLM
from speechunits.lm.packed import write_packed

V = 5


def corpus(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Sequences of a cyclic pattern 0 1 2 3 0 1 2 3 ... with random starts and lengths (4 is rare)."""
    rng = np.random.default_rng(seed)
    out = [(rng.integers(0, 4) + np.arange(rng.integers(1, 12))) % 4 for _ in range(n)]
    out.append(np.array([4, 4, 0]))
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distribution_sums_to_one_and_matches_prob(order: int) -> None:
    lm = NGramLM.fit(corpus(), V, order)
    bos, eos = lm.bos, lm.eos
    for history in ([bos], [bos, 0], [bos, 0, 1, 2], [bos, 4, 4], [bos, 3, 3, 3], [bos, 1, 0, 4, 2]):
        dist = lm.next_distribution(history)
        assert dist.shape == (V + 1,)
        assert (dist > 0).all()
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        for w in range(V):
            assert lm.prob(w, history) == pytest.approx(dist[w], rel=1e-12)
        assert lm.prob(eos, history) == pytest.approx(dist[V], rel=1e-12)


def test_token_logprobs_protocol_and_learning() -> None:
    lm = NGramLM.fit(corpus(), V, 3)
    assert lm.vocab_size == V
    seqs = [np.array([0, 1, 2, 3]), np.array([], dtype=np.int64), np.array([3, 1, 0])]
    lps = lm.token_logprobs(seqs)
    assert [lp.shape for lp in lps] == [(5,), (1,), (4,)]
    assert all(lp.dtype == np.float64 and (lp < 0).all() for lp in lps)
    history = [lm.bos, 0, 1, 2, 3]
    assert lps[0][-1] == pytest.approx(math.log(lm.prob(lm.eos, history)))
    # the pattern is learned: in-pattern continuations beat off-pattern ones
    assert lps[0][1:4].mean() > lps[2][1:3].mean() + 1.0
    assert lm.prob(2, [lm.bos, 0, 1]) > 0.5
    # higher order fits the training data better than the unigram
    train = corpus()
    nll = [-sum(lp.sum() for lp in NGramLM.fit(train, V, n).token_logprobs(train)) for n in (1, 3)]
    assert nll[1] < nll[0] * 0.7


def test_bos_grams_are_distinguished_from_mid_sequence() -> None:
    # 4 only ever starts a sequence: after BOS it is likely, mid-sequence it is not
    seqs = [np.array([4, 0, 1]), np.array([4, 1, 0]), np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])]
    lm = NGramLM.fit(seqs, V, 2)
    assert lm.prob(4, [lm.bos]) > 3 * lm.prob(4, [lm.bos, 0])


def test_save_load_round_trip_and_truncated_file(tmp_path: Path) -> None:
    lm = NGramLM.fit(corpus(), V, 3, producer={"unit_set_hash": "h", "dedup": True, "bpe": None})
    path = tmp_path / "m.json"
    lm.save(path)
    back = NGramLM.load(path)
    assert back.order == 3 and back.vocab_size == V and back.producer == lm.producer
    seqs = corpus(5, seed=3)
    for a, b in zip(lm.token_logprobs(seqs), back.token_logprobs(seqs)):
        np.testing.assert_array_equal(a, b)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"m\.json.*truncated"):
        NGramLM.load(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="format"):
        NGramLM.load(path)


def test_lm_ngram_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seqs = corpus()
    prefix = tmp_path / "train"
    producer = {"unit_set_hash": "h", "dedup": True, "bpe": None}
    write_packed(prefix, [f"u{i}" for i in range(len(seqs))], seqs, [1.0] * len(seqs), vocab_size=V, producer=producer)
    out = tmp_path / "ngram.json"
    assert main(["lm-ngram", "--train", str(prefix), "--out", str(out), "--order", "2"]) == 0
    assert "order 2" in capsys.readouterr().out
    lm = NGramLM.load(out)
    assert lm.order == 2 and lm.producer == producer
    np.testing.assert_allclose(lm.token_logprobs(seqs[:3])[0], NGramLM.fit(seqs, V, 2).token_logprobs(seqs[:3])[0])
    assert main(["lm-ngram", "--train", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_hand_computed_kneser_ney_bigram() -> None:
    """BOS 0 EOS / BOS 0 1 EOS, V=2. Unigram continuation counts 0:1 (BOS), 1:1, EOS:2 -> D1 = 2/(2+2);
    bigram counts (BOS 0):2, (0 1), (0 EOS), (1 EOS):1 -> D2 = 3/(3+2); p_0 = 1/3."""
    lm = NGramLM.fit([np.array([0]), np.array([0, 1])], 2, 2)
    assert [lv.discount for lv in lm.levels] == pytest.approx([0.5, 0.6])
    p1 = {0: 0.5 / 4 + 0.5 * 3 / 4 / 3, 1: 0.5 / 4 + 0.5 * 3 / 4 / 3, lm.eos: 1.5 / 4 + 0.5 * 3 / 4 / 3}
    assert sum(p1.values()) == pytest.approx(1.0)
    assert lm.prob(1, [lm.bos, 0]) == pytest.approx(0.4 / 2 + 0.6 * 2 / 2 * p1[1])
    assert lm.prob(0, [lm.bos]) == pytest.approx(1.4 / 2 + 0.6 * 1 / 2 * p1[0])
    assert lm.prob(1, [lm.bos, 1]) == pytest.approx(0.6 * 1 / 1 * p1[1])  # context 1 saw only EOS
