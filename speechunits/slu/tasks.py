"""Class-incremental splits of FSC and SLURP into a sequence of disjoint tasks.

Rules (documented in docs/slu.md):

* A benchmark is a class order cut into ``num_tasks`` contiguous chunks. When the number
  of classes is not divisible, the first ``num_classes % num_tasks`` tasks get one class
  more (FSC-3: 11/10/10, FSC-6: 6/5/5/5/5/5, FSC-10: 4/3/.../3).
* SLURP (scenario level): the 18 scenarios, most-populated first, as in COCONUT
  (:data:`SLURP_SCENARIOS`); SLURP-3 = 6/6/6, SLURP-6 = 3 x 6.
* FSC: the 31 intents (``action_object_location``) sorted by training-set frequency,
  most frequent first, ties broken by the intent name (:func:`class_order_by_frequency`).
  The order is therefore a deterministic function of the training split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from speechunits.errors import ConfigError

SLURP_SCENARIOS: tuple[str, ...] = (
    "calendar", "email", "general", "play", "qa", "social", "alarm", "audio", "cooking",
    "datetime", "iot", "lists", "music", "news", "recommendation", "takeaway", "transport", "weather",
)  # fmt: skip
"""The 18 SLURP scenarios, most-populated first (the COCONUT class order)."""

FSC_NUM_INTENTS = 31
BENCHMARKS: dict[str, tuple[str, int]] = {
    "fsc-3": ("fsc", 3),
    "fsc-6": ("fsc", 6),
    "fsc-10": ("fsc", 10),
    "slurp-3": ("slurp", 3),
    "slurp-6": ("slurp", 6),
}


@dataclass(frozen=True)
class ClassIncrementalSplit:
    """A class order cut into tasks. ``tasks[t]`` lists the classes first seen in task ``t``."""

    name: str
    tasks: tuple[tuple[str, ...], ...]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def classes(self) -> tuple[str, ...]:
        """All classes in the order they are introduced."""
        return tuple(c for task in self.tasks for c in task)

    def task_of(self, label: str) -> int:
        """Index of the task that introduces ``label``."""
        for t, task in enumerate(self.tasks):
            if label in task:
                return t
        raise KeyError(f"class {label!r} is in no task of {self.name}")

    def class_to_task(self) -> dict[str, int]:
        return {c: t for t, task in enumerate(self.tasks) for c in task}

    def seen_classes(self, task: int) -> tuple[str, ...]:
        """Classes of tasks ``0..task`` (what the model must know after training ``task``)."""
        return tuple(c for t in self.tasks[: task + 1] for c in t)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "tasks": [list(t) for t in self.tasks]}


def split_classes(class_order: Sequence[str], num_tasks: int, name: str = "custom") -> ClassIncrementalSplit:
    """Cut ``class_order`` into ``num_tasks`` contiguous chunks, earlier chunks one larger on a remainder."""
    classes = list(class_order)
    if len(set(classes)) != len(classes):
        dup = sorted(c for c, n in Counter(classes).items() if n > 1)
        raise ConfigError(None, f"class order of {name} repeats classes: {dup}")
    if num_tasks < 1 or num_tasks > len(classes):
        raise ConfigError(None, f"{name}: cannot split {len(classes)} classes into {num_tasks} tasks")
    base, extra = divmod(len(classes), num_tasks)
    tasks, start = [], 0
    for t in range(num_tasks):
        size = base + (1 if t < extra else 0)
        tasks.append(tuple(classes[start : start + size]))
        start += size
    return ClassIncrementalSplit(name=name, tasks=tuple(tasks))


def class_order_by_frequency(labels: Iterable[str]) -> list[str]:
    """Classes sorted by count (descending), ties by name (ascending): deterministic."""
    counts = Counter(labels)
    return sorted(counts, key=lambda c: (-counts[c], c))


def make_benchmark(name: str, train_labels: Iterable[str] | None = None) -> ClassIncrementalSplit:
    """One of :data:`BENCHMARKS` (``fsc-3``, ``fsc-6``, ``fsc-10``, ``slurp-3``, ``slurp-6``).

    FSC needs the training-split labels (the order is by frequency, see module doc); SLURP
    uses the fixed scenario order, and checks ``train_labels`` (if given) against it.
    """
    key = name.lower()
    if key not in BENCHMARKS:
        raise ConfigError(None, f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    corpus, num_tasks = BENCHMARKS[key]
    labels = list(train_labels) if train_labels is not None else None
    if corpus == "slurp":
        if labels is not None:
            unknown = sorted(set(labels) - set(SLURP_SCENARIOS))
            if unknown:
                raise ConfigError(None, f"{name}: labels {unknown} are not SLURP scenarios {SLURP_SCENARIOS}")
        return split_classes(SLURP_SCENARIOS, num_tasks, name=key)
    if not labels:
        raise ConfigError(None, f"{name}: the FSC class order needs the training labels")
    order = class_order_by_frequency(labels)
    if len(order) != FSC_NUM_INTENTS:
        raise ConfigError(None, f"{name}: expected {FSC_NUM_INTENTS} FSC intents in the training labels, found {len(order)}")
    return split_classes(order, num_tasks, name=key)


def split_from_dict(d: Mapping[str, object]) -> ClassIncrementalSplit:
    """Inverse of :meth:`ClassIncrementalSplit.to_dict` (a stored split is reused verbatim)."""
    tasks = d.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, list) for t in tasks):
        raise ConfigError(None, f"expected {{'name': ..., 'tasks': [[...], ...]}}, found {d!r}")
    split = ClassIncrementalSplit(name=str(d.get("name", "custom")), tasks=tuple(tuple(map(str, t)) for t in tasks))
    classes = split.classes
    if len(set(classes)) != len(classes):
        raise ConfigError(None, f"split {split.name} has a class in more than one task")
    return split


def select_task(items: Sequence[object], labels: Sequence[str], classes: Iterable[str]) -> list[object]:
    """Items whose label is in ``classes`` (order kept): one task's train or test data."""
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} items but {len(labels)} labels")
    wanted = set(classes)
    return [item for item, label in zip(items, labels) if label in wanted]
