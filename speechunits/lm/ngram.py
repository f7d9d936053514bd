"""An interpolated Kneser-Ney n-gram LM over packed token ids: the baseline a Transformer must beat.

Tokens are ids ``0..V-1``; ``BOS = V`` starts every sequence and ``EOS = V+1`` ends it, as
for the Transformer (:mod:`speechunits.lm.tokens`), so both implement the same Scorer
protocol and their scores are comparable: a sequence of n tokens gets n+1 natural-log
predictions, the last one EOS's.

Smoothing: interpolated Kneser-Ney with one absolute discount per order (Chen & Goodman
1999, "interpolated KN"; not the modified three-discount variant: unit vocabularies are
small and dense, so the extra discounts buy little, and one discount keeps the model file
and the proof that it normalises short). For a gram ``h w`` of order k::

    p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .) + D_k * N1+(h .) / c_k(h .) * p_{k-1}(w | h')

where ``h'`` drops the oldest token of ``h``, ``p_0`` is uniform over the V+1 outcomes (the
ids and EOS; BOS is never predicted), and a context never seen falls through to
``p_{k-1}``. ``c_k`` is the raw count at the highest order and for grams that start with
BOS (they have no left extension); below the highest order it is otherwise the *continuation
count*, the number of distinct tokens (BOS included) seen right before the gram. ``D_k = n1 / (n1 + 2 n2)`` from the counts-of-counts of order k
(0.5 when undefined). Every level sums to one over the outcomes, so the model is a proper
distribution whatever the data: :meth:`NGramLM.next_distribution` returns it in full.

The model is saved as JSON (written atomically) with the packed set's producer block, which
scoring checks against the data it scores.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import CheckpointError
from speechunits.io_utils import atomic_write_json

__all__ = ["FORMAT", "NGramLM"]

FORMAT = "speechunits.lm.ngram/1"
PathLike = str | os.PathLike[str]
Context = tuple[int, ...]


class _Level:
    """Counts of one order: context -> {token: count}, with each context's total and type count."""

    def __init__(self, table: dict[Context, dict[int, int]], discount: float) -> None:
        self.table = table
        self.discount = discount
        self.totals = {h: sum(ws.values()) for h, ws in table.items()}


def _discount(counts: Iterable[int]) -> float:
    values = list(counts)
    n1, n2 = values.count(1), values.count(2)
    d = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    return min(max(d, 0.05), 0.95)


class NGramLM:
    """Interpolated Kneser-Ney LM of order ``order`` over ids ``0..vocab_size-1`` (+ BOS/EOS)."""

    def __init__(self, vocab_size: int, order: int, levels: list[_Level], producer: dict[str, Any] | None = None) -> None:
        self.vocab_size = int(vocab_size)
        self.order = int(order)
        self.levels = levels  # levels[k-1] holds the grams of order k
        self.producer = dict(producer or {})

    @property
    def bos(self) -> int:
        return self.vocab_size

    @property
    def eos(self) -> int:
        return self.vocab_size + 1

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, sequences: Iterable[np.ndarray], vocab_size: int, order: int = 3,
            producer: dict[str, Any] | None = None) -> NGramLM:
        """Count the n-grams of ``BOS t_1..t_n EOS`` for every sequence and build the model."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        bos, eos = vocab_size, vocab_size + 1
        raw: dict[Context, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # highest order, raw counts
        bos_raw: list[dict[Context, dict[int, int]]] = [defaultdict(lambda: defaultdict(int)) for _ in range(order)]
        for seq in sequences:
            arr = np.asarray(seq, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"token ids must be in [0, {vocab_size})")
            s = [bos, *arr.tolist(), eos]
            for i in range(1, len(s)):
                lo = i - order + 1
                if lo >= 0:
                    raw[tuple(s[lo:i])][s[i]] += 1
                else:  # the gram reaches BOS before the highest order: raw counts at order i + 1
                    bos_raw[i][tuple(s[0:i])][s[i]] += 1
        tables: list[dict[Context, dict[int, int]]] = [dict() for _ in range(order)]
        tables[order - 1] = {h: dict(ws) for h, ws in raw.items()}
        # continuation counts: N1+(. h w) from the distinct grams of the order above
        for k in range(order - 1, 0, -1):  # build order k from order k + 1
            cont: dict[Context, dict[int, int]] = defaultdict(lambda: defaultdict(int))
            for h, ws in tables[k].items():  # BOS counts as a left neighbour like any token
                for w in ws:
                    cont[h[1:]][w] += 1
            for h, ws in bos_raw[k - 1].items():  # BOS-initial grams of order k keep raw counts
                for w, c in ws.items():
                    cont[h][w] += c
            tables[k - 1] = {h: dict(ws) for h, ws in cont.items()}
        levels = [_Level(t, _discount(c for ws in t.values() for c in ws.values())) for t in tables]
        return cls(vocab_size, order, levels, producer)

    # -------------------------------------------------------------- scoring
    def _context(self, history: Sequence[int]) -> Context:
        return tuple(history[-(self.order - 1):]) if self.order > 1 else ()

    def _interpolation(self, history: Sequence[int]) -> Iterator[tuple[dict[int, int], float, float]]:
        """(counts after the context, their total, discount) of every order whose context was seen,
        lowest first: the levels the interpolation walks up."""
        ctx = self._context(history)
        for k in range(len(ctx) + 1):  # from order 1 (empty context) up to the full context
            ws = self.levels[k].table.get(ctx[len(ctx) - k:])
            if ws:
                yield ws, self.levels[k].totals[ctx[len(ctx) - k:]], self.levels[k].discount

    def prob(self, token: int, history: Sequence[int]) -> float:
        """p(token | history): ``history`` are LM ids starting with BOS; ``token`` an id or EOS."""
        p = 1.0 / (self.vocab_size + 1)
        for ws, total, d in self._interpolation(history):
            p = max(ws.get(token, 0) - d, 0.0) / total + d * len(ws) / total * p
        return p

    def next_distribution(self, history: Sequence[int]) -> np.ndarray:
        """p(. | history) over the V+1 outcomes: ids ``0..V-1``, then EOS at index V (float64)."""
        dist = np.full(self.vocab_size + 1, 1.0 / (self.vocab_size + 1))
        for ws, total, d in self._interpolation(history):
            counts = np.zeros(self.vocab_size + 1)
            idx = np.fromiter((w if w != self.eos else self.vocab_size for w in ws), dtype=np.int64, count=len(ws))
            counts[idx] = np.fromiter(ws.values(), dtype=np.float64, count=len(ws))
            dist = np.maximum(counts - d, 0.0) / total + d * len(ws) / total * dist
        return dist

    def token_logprobs(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Scorer protocol: per sequence, the n+1 natural-log probabilities of ``t_1..t_n, EOS``."""
        out = []
        for seq in sequences:
            s = [self.bos, *np.asarray(seq, dtype=np.int64).tolist(), self.eos]
            lps = [math.log(self.prob(s[i], s[max(0, i - self.order + 1):i])) for i in range(1, len(s))]
            out.append(np.array(lps, dtype=np.float64))
        return out

    # -------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "vocab_size": self.vocab_size, "order": self.order, "producer": self.producer,
                "levels": [{"discount": lv.discount,
                            "grams": [[list(h), [[w, c] for w, c in sorted(ws.items())]]
                                      for h, ws in sorted(lv.table.items())]} for lv in self.levels]}

    def save(self, path: PathLike) -> None:
        """Write the model as JSON, atomically."""
        atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: PathLike) -> NGramLM:
        """Read a model written by :meth:`save`; a truncated or foreign file is a CheckpointError naming it."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(path, "no such n-gram model file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(path, f"not a complete JSON n-gram model (truncated?): {err}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(path, f"format must be {FORMAT!r}, found {found!r}")
        try:
            levels = [_Level({tuple(h): {int(w): int(c) for w, c in ws} for h, ws in lv["grams"]}, float(lv["discount"]))
                      for lv in d["levels"]]
            model = cls(int(d["vocab_size"]), int(d["order"]), levels, d.get("producer"))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(path, f"malformed n-gram model ({err!r})") from None
        if len(levels) != model.order:
            raise CheckpointError(path, f"{len(levels)} levels for order {model.order}")
        return model
