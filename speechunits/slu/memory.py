"""Rehearsal memory for class-incremental learning (experience replay).

Policy (docs/slu.md): a fixed budget ``M`` (absolute, or a fraction of the whole training
set, ~1% in COCONUT) shared as equally as possible by the ``n`` classes seen so far: each
gets ``M // n`` and the first ``M % n`` classes (in the order they were added) one more, so
the whole budget is used even when it is smaller than the number of classes (1% of a small
corpus). After each task the old classes are cut down to their new quota
(keeping the *first* items of their selection order, so a herding memory stays a herding
memory) and each new class gets up to its quota, chosen at random or by iCaRL herding on
given features (mean-pooled encoder outputs). The memory never holds more than ``M``.
The memory stores item keys (utterance ids) with their labels; callers map keys to data.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from speechunits.errors import ConfigError

SELECTIONS = ("random", "herding")


def herding_selection(features: np.ndarray, k: int) -> list[int]:
    """iCaRL herding: indices of ``k`` rows whose running mean best approximates the class mean.

    Rows are L2-normalised first (as in iCaRL). Step ``j`` picks, without replacement, the
    row ``i`` minimising ``|| mu - (sum_selected + f_i) / j ||``. The result is an order:
    every prefix is itself the herding selection of that size.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    n = x.shape[0]
    k = min(k, n)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    mu = x.mean(axis=0)
    chosen: list[int] = []
    running = np.zeros_like(mu)
    available = np.ones(n, dtype=bool)
    for j in range(1, k + 1):
        candidates = (running[None, :] + x) / j
        dist = np.linalg.norm(mu[None, :] - candidates, axis=1)
        dist[~available] = np.inf
        i = int(np.argmin(dist))
        chosen.append(i)
        available[i] = False
        running += x[i]
    return chosen


class RehearsalMemory:
    """Class-balanced rehearsal buffer with a fixed budget.

    Args:
        budget: maximum number of stored items.
        selection: ``"random"`` or ``"herding"`` (needs features in :meth:`add_task`).
        seed: seed of the random selection.
    """

    def __init__(self, budget: int, selection: str = "random", seed: int = 0) -> None:
        if budget < 0:
            raise ConfigError(None, f"memory budget must be >= 0, got {budget}")
        if selection not in SELECTIONS:
            raise ConfigError(None, f"memory selection must be one of {SELECTIONS}, got {selection!r}")
        self.budget = int(budget)
        self.selection = selection
        self.seed = int(seed)
        self._by_class: dict[str, list[Hashable]] = {}
        self._tasks_added = 0

    @classmethod
    def from_fraction(cls, fraction: float, num_train: int, selection: str = "random", seed: int = 0) -> RehearsalMemory:
        """Budget = ``round(fraction * num_train)`` (num_train: the whole training set of all tasks)."""
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(None, f"memory fraction must be in [0, 1], got {fraction}")
        return cls(int(round(fraction * num_train)), selection=selection, seed=seed)

    # --- queries -------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self._by_class)

    def quotas(self, classes: Sequence[str] | None = None) -> dict[str, int]:
        """Items allowed per class for ``classes`` (default: the stored ones, in the order
        they were added): ``M // n`` each, one more for the first ``M % n``."""
        order = list(self._by_class) if classes is None else list(classes)
        if not order:
            return {}
        q, extra = divmod(self.budget, len(order))
        return {label: q + (i < extra) for i, label in enumerate(order)}

    def items(self) -> list[tuple[Hashable, str]]:
        """(key, label) of every stored item, classes in the order they were added."""
        return [(key, label) for label, keys in self._by_class.items() for key in keys]

    def keys(self) -> list[Hashable]:
        return [key for key, _ in self.items()]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_class.values())

    def counts(self) -> dict[str, int]:
        return {label: len(keys) for label, keys in self._by_class.items()}

    # --- update --------------------------------------------------------------------
    def add_task(
        self,
        keys: Sequence[Hashable],
        labels: Sequence[str],
        features: np.ndarray | None = None,
    ) -> None:
        """Add the training data of a finished task (its new classes) and re-balance.

        ``keys``/``labels`` are the task's training items; ``features`` (N, D) are needed
        for herding. Classes already in memory are not re-selected (their items in
        ``keys`` are ignored), only trimmed to the new quota.
        """
        if len(keys) != len(labels):
            raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
        if self.selection == "herding":
            if features is None:
                raise ConfigError(None, "herding selection needs features for every item")
            features = np.asarray(features)
            if features.shape[0] != len(keys):
                raise ValueError(f"{len(keys)} keys but features of shape {features.shape}")
        new_classes: list[str] = []
        for label in labels:
            if label not in self._by_class and label not in new_classes:
                new_classes.append(label)
        quota = self.quotas([*self._by_class, *new_classes])
        for label in self._by_class:
            del self._by_class[label][quota[label]:]
        rng = np.random.default_rng([self.seed, self._tasks_added])
        labels_arr = np.asarray(labels, dtype=object)
        for label in new_classes:
            idx = np.flatnonzero(labels_arr == label)
            if self.selection == "herding":
                assert features is not None
                order = [int(idx[i]) for i in herding_selection(features[idx], quota[label])]
            else:
                order = [int(i) for i in rng.permutation(idx)[: quota[label]]]
            self._by_class[label] = [keys[i] for i in order]
        self._tasks_added += 1
        assert len(self) <= self.budget

    # --- persistence ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "selection": self.selection,
            "seed": self.seed,
            "tasks_added": self._tasks_added,
            "by_class": {label: list(keys) for label, keys in self._by_class.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("budget") != self.budget or state.get("selection") != self.selection:
            raise ConfigError(
                None,
                f"memory state has budget {state.get('budget')}/{state.get('selection')}, "
                f"this memory {self.budget}/{self.selection}",
            )
        self.seed = int(state["seed"])
        self._tasks_added = int(state["tasks_added"])
        self._by_class = {str(k): list(v) for k, v in state["by_class"].items()}
