"""Minimal-pair accuracy with the ZeroSpeech 2021 rule, plus a bootstrap confidence interval.

A pair is the correct and the incorrect file of one (``id``, ``voice``) of a gold.csv
(:func:`speechunits.data.corpora.zr2021.read_gold`). It scores 1 when the correct file's
score (an LM log-probability) is higher, 0.5 on a tie and 0 otherwise; the pairs of one id
(its voices) are averaged, and the accuracy is the mean over ids, so an id counts once however
many voices speak it. The 95% interval is a percentile bootstrap over ids (the unit the mean
is taken over), which is what varies when another set of words or sentences is drawn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from speechunits.errors import DataError

CI_LEVEL = 0.95


class GoldLike(Protocol):
    """What a gold row needs here (:class:`speechunits.data.corpora.zr2021.GoldItem` has it)."""

    id: str
    filename: str
    correct: bool
    voice: str


def pair_scores(gold_items: Iterable[GoldLike], scores: Mapping[str, float]) -> list[tuple[Any, float]]:
    """(gold row of the correct member, 1 / 0.5 / 0) of every pair, in gold order.

    DataError naming the file for a gold file without a score, and naming the pair when an
    (id, voice) is not one correct and one incorrect file.
    """
    pairs: dict[tuple[str, str], list[GoldLike]] = defaultdict(list)
    for item in gold_items:
        pairs[(item.id, item.voice)].append(item)
    out = []
    for (pair_id, voice), members in pairs.items():
        good = [m for m in members if m.correct]
        bad = [m for m in members if not m.correct]
        if len(good) != 1 or len(bad) != 1:
            raise DataError(None, f"gold pair id {pair_id!r} voice {voice!r} is not one correct and one incorrect "
                                  f"file ({len(good)} correct, {len(bad)} incorrect)")
        values = []
        for m in (good[0], bad[0]):
            if m.filename not in scores:
                raise DataError(None, f"no score for gold file {m.filename!r} (pair id {pair_id!r}, voice {voice!r})")
            values.append(float(scores[m.filename]))
        if not all(np.isfinite(values)):
            raise DataError(None, f"non-finite score in pair id {pair_id!r} voice {voice!r}: {values}")
        out.append((good[0], 1.0 if values[0] > values[1] else 0.5 if values[0] == values[1] else 0.0))
    return out


def item_scores(pairs: Sequence[tuple[Any, float]], group_by: Sequence[str] = ("id",)) -> np.ndarray:
    """The mean pair score of each item (pairs grouped by the ``group_by`` gold fields: the official
    rule averages an item's voices), items in the order of their first pair."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for item, value in pairs:
        groups[tuple(getattr(item, key) for key in group_by)].append(value)
    return np.array([np.mean(v) for v in groups.values()], dtype=np.float64)


def bootstrap_ci(values: np.ndarray, num_bootstrap: int, seed: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    if num_bootstrap < 1 or len(values) == 0:
        mean = float(values.mean()) if len(values) else float("nan")
        return mean, mean
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(num_bootstrap, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _summary(pairs: Sequence[tuple[Any, float]], group_by: Sequence[str], num_bootstrap: int,
             seed: int) -> dict[str, Any]:
    values = item_scores(pairs, group_by)
    low, high = bootstrap_ci(values, num_bootstrap, seed)
    return {"accuracy": float(values.mean()), "ci_low": low, "ci_high": high, "n_pairs": len(pairs),
            "n_ids": len(values)}


def paired_difference(gold_items: Sequence[GoldLike], scores_a: Mapping[str, float], scores_b: Mapping[str, float],
                      *, group_by: Sequence[str] = ("id",), num_bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Accuracy of scorer A minus scorer B on the same items, with a bootstrap CI over the items
    (resampled together, in sorted item order): whether A beats B, rather than whether two CIs overlap."""
    items = sorted(gold_items, key=lambda g: tuple(getattr(g, key) for key in group_by))
    diff = item_scores(pair_scores(items, scores_a), group_by) - item_scores(pair_scores(items, scores_b), group_by)
    low, high = bootstrap_ci(diff, num_bootstrap, seed)
    return {"difference": float(diff.mean()), "ci_low": low, "ci_high": high, "n_ids": len(diff)}


def pair_accuracy(gold_items: Iterable[GoldLike], scores: Mapping[str, float], *,
                  group_by: Sequence[str] = ("id",), num_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy over the gold pairs given a score per filename (higher = more probable).

    Returns ``accuracy``, ``ci_low``/``ci_high`` (95% percentile bootstrap over the groups),
    ``ci_level``, ``n_pairs``, ``n_ids`` (groups), ``num_bootstrap``, and, when the gold rows
    have a ``type`` (syntactic), ``by_type`` and ``by_subtype`` with the same fields per type.
    ``group_by`` names the gold fields whose pairs are averaged first (the official rule: ``id``).
    """
    pairs = pair_scores(gold_items, scores)
    if not pairs:
        raise DataError(None, "no gold pairs to score")
    report = _summary(pairs, group_by, num_bootstrap, seed)
    report.update(ci_level=CI_LEVEL, num_bootstrap=num_bootstrap, group_by=list(group_by))
    for field, key in (("type", "by_type"), ("subtype", "by_subtype")):
        labels = sorted({getattr(item, field, None) for item, _ in pairs} - {None})
        if labels:
            report[key] = {label: _summary([p for p in pairs if getattr(p[0], field) == label], group_by,
                                           num_bootstrap, seed) for label in labels}
    return report


__all__ = ["CI_LEVEL", "GoldLike", "bootstrap_ci", "item_scores", "pair_accuracy", "pair_scores", "paired_difference"]
