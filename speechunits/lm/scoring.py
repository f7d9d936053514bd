"""Scoring token sequences with a unit LM: the Scorer protocol, per-sequence and corpus figures.

Every scorer (the Transformer here, the n-gram of :mod:`speechunits.lm.ngram`) implements
``token_logprobs(sequences) -> list[np.ndarray]`` (float64, natural log, ``n + 1`` values for a
sequence of ``n`` tokens: each token given BOS and the tokens before it, then EOS) and has
``vocab_size`` (V, the data's token ids) and ``producer`` (the training set's producer block).
Everything downstream (``lm-score``, validation during training, the probes) works on that
protocol, so the two model kinds are interchangeable.

Corpus figures (:func:`corpus_summary`): per token (``nll_per_token``, ``ppl_per_token``) they
depend on the tokenisation (dedup, BPE); per second of audio (``nll_per_second``,
``ppl_per_second = exp(total nll / seconds)``, ``bits_per_second``) they do not, which is what
lets LMs over different unit sets be compared on the same audio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from speechunits.data.batching import pack_by_frames
from speechunits.errors import ConfigError
from speechunits.lm.model import UnitLM, bos_id, eos_id, next_token_logprobs
from speechunits.lm.model_io import load_lm
from speechunits.lm.ngram import NGramLM
from speechunits.lm.packed import PackedTokens
from speechunits.lm.tokens import check_compatible

__all__ = ["Scorer", "SequenceScore", "TransformerScorer", "check_scorer_data", "corpus_summary", "load_scorer",
           "score_packed"]


class Scorer(Protocol):
    vocab_size: int

    def token_logprobs(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class SequenceScore:
    """One sequence's log-probability (natural log) over ``num_predictions`` = tokens + 1 (EOS)."""

    id: str
    sum_logprob: float
    num_predictions: int
    seconds: float

    @property
    def mean_logprob(self) -> float:
        return self.sum_logprob / self.num_predictions

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sum_logprob": self.sum_logprob, "num_predictions": self.num_predictions,
                "mean_logprob": self.mean_logprob, "seconds": self.seconds}


class TransformerScorer:
    """The Scorer protocol for a :class:`~speechunits.lm.model.UnitLM` (batched, right-padded)."""

    def __init__(self, model: UnitLM, producer: dict[str, Any] | None = None, batch_tokens: int = 16384) -> None:
        self.model = model
        self.producer = dict(producer or {})
        self.vocab_size = model.cfg.vocab_size - 2
        self.batch_tokens = int(batch_tokens)

    @torch.no_grad()
    def token_logprobs(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        cfg = self.model.cfg
        device = next(self.model.parameters()).device
        seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
        for k, s in enumerate(seqs):
            if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= self.vocab_size)):
                raise ValueError(f"sequence {k}: expected a 1-d array of token ids in [0, {self.vocab_size})")
        out: list[np.ndarray] = [np.zeros(0)] * len(seqs)
        widths = [len(s) + 1 for s in seqs]
        longest_first = sorted(range(len(seqs)), key=lambda i: -widths[i])
        for batch in pack_by_frames(longest_first, widths, self.batch_tokens):
            width = len(seqs[batch[0]]) + 1
            inputs = torch.full((len(batch), width), bos_id(cfg), dtype=torch.long)
            targets = torch.full((len(batch), width), eos_id(cfg), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(seqs[i])
                inputs[row, 1:n + 1] = torch.from_numpy(seqs[i])
                targets[row, :n] = torch.from_numpy(seqs[i])
            logp = next_token_logprobs(self.model(inputs.to(device)))
            picked = logp.gather(-1, targets.to(device)[..., None])[..., 0].double().cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = picked[row, :len(seqs[i]) + 1].copy()
        return out


def load_scorer(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Scorer:
    """A scorer from a model file: ``.json`` -> n-gram (:class:`speechunits.lm.ngram.NGramLM`),
    anything else -> a Transformer saved by :func:`speechunits.lm.model_io.save_lm`."""
    if Path(path).suffix == ".json":
        return NGramLM.load(path)
    model, info = load_lm(path, device)
    return TransformerScorer(model, info.producer)


def check_scorer_data(scorer: Scorer, packed: PackedTokens, what_model: str, what_data: str) -> None:
    """Refuse data the model was not trained for: another vocabulary size or producer block."""
    if scorer.vocab_size != packed.vocab_size:
        raise ConfigError(None, f"{what_model} has {scorer.vocab_size} token ids but {what_data} has "
                                f"{packed.vocab_size}: tokens from different unit sets or BPE models")
    check_compatible(getattr(scorer, "producer", None) or {}, packed.producer, what_model, what_data)


def score_packed(scorer: Scorer, packed: PackedTokens, *, max_sequences: int | None = None,
                 chunk: int = 512) -> list[SequenceScore]:
    """Scores of the sequences of ``packed`` in order (the first ``max_sequences`` when given)."""
    n = len(packed) if max_sequences is None else min(len(packed), int(max_sequences))
    scores: list[SequenceScore] = []
    for start in range(0, n, chunk):
        idx = range(start, min(n, start + chunk))
        logps = scorer.token_logprobs([packed[i] for i in idx])
        for i, lp in zip(idx, logps):
            scores.append(SequenceScore(packed.items[i].id, float(lp.sum()), len(lp), packed.items[i].seconds))
    return scores


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return float("inf")


def corpus_summary(scores: Sequence[SequenceScore]) -> dict[str, float]:
    """Per-token and per-second negative log-likelihood, perplexity and bits (see the module docstring)."""
    nll = -sum(s.sum_logprob for s in scores)
    tokens = sum(s.num_predictions for s in scores)
    seconds = sum(s.seconds for s in scores)
    per_tok = nll / tokens if tokens else float("nan")
    per_sec = nll / seconds if seconds > 0 else float("nan")
    return {"sequences": len(scores), "tokens": tokens, "seconds": seconds,
            "nll_per_token": per_tok, "ppl_per_token": _exp(per_tok) if tokens else float("nan"),
            "nll_per_second": per_sec, "ppl_per_second": _exp(per_sec) if seconds > 0 else float("nan"),
            "bits_per_second": per_sec / math.log(2) if seconds > 0 else float("nan")}
