"""Class-incremental splits and the rehearsal memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechunits.errors import ConfigError
from speechunits.slu.memory import RehearsalMemory, herding_selection
from speechunits.slu.tasks import (
    SLURP_SCENARIOS,
    class_order_by_frequency,
    make_benchmark,
    select_task,
    split_classes,
    split_from_dict,
)


def fsc_labels() -> list[str]:
    """31 synthetic FSC intents with distinct-ish counts (some ties)."""
    labels = []
    for i in range(31):
        labels += [f"act{i:02d}_obj_none"] * (50 - (i // 2))
    return labels


@pytest.mark.parametrize("name,sizes", [("fsc-3", [11, 10, 10]), ("fsc-6", [6, 5, 5, 5, 5, 5]), ("fsc-10", [4] + [3] * 9)])
def test_fsc_benchmarks_disjoint_and_complete(name: str, sizes: list[int]) -> None:
    labels = fsc_labels()
    split = make_benchmark(name, labels)
    assert [len(t) for t in split.tasks] == sizes
    flat = split.classes
    assert len(flat) == len(set(flat)) == 31 and set(flat) == set(labels)
    for i, a in enumerate(split.tasks):
        for b in split.tasks[i + 1 :]:
            assert not set(a) & set(b)
    # the order is by frequency, ties by name, and independent of input order
    assert list(flat) == class_order_by_frequency(labels)
    assert make_benchmark(name, list(reversed(labels))) == split


def test_frequency_order_ties_by_name() -> None:
    assert class_order_by_frequency(["b", "a", "c", "c", "b", "a", "d"]) == ["a", "b", "c", "d"]
    assert class_order_by_frequency(["z", "z", "y"]) == ["z", "y"]


@pytest.mark.parametrize("name,num", [("slurp-3", 3), ("slurp-6", 6)])
def test_slurp_benchmarks(name: str, num: int) -> None:
    split = make_benchmark(name)
    assert split.num_tasks == num and split.classes == SLURP_SCENARIOS
    assert split.tasks[0][:3] == ("calendar", "email", "general") and len(set(map(len, split.tasks))) == 1
    assert split.task_of("weather") == num - 1 and split.seen_classes(0) == split.tasks[0]
    with pytest.raises(ConfigError, match="not SLURP scenarios"):
        make_benchmark(name, ["calendar", "smalltalk"])


def test_benchmark_errors_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark"):
        make_benchmark("fsc-4", fsc_labels())
    with pytest.raises(ConfigError, match="31 FSC intents"):
        make_benchmark("fsc-3", ["a", "b", "c"])
    with pytest.raises(ConfigError, match="repeats"):
        split_classes(["a", "a", "b"], 2)
    split = make_benchmark("slurp-6")
    assert split_from_dict(split.to_dict()) == split
    assert select_task(["u1", "u2", "u3"], ["alarm", "email", "news"], split.tasks[0]) == ["u2"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40))
def test_split_classes_property(num_classes: int, num_tasks: int) -> None:
    classes = [f"c{i}" for i in range(num_classes)]
    if num_tasks > num_classes:
        with pytest.raises(ConfigError):
            split_classes(classes, num_tasks)
        return
    split = split_classes(classes, num_tasks)
    sizes = [len(t) for t in split.tasks]
    assert list(split.classes) == classes and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


# --- memory --------------------------------------------------------------------------
def make_task(classes: list[str], per_class: int, start: int = 0) -> tuple[list[str], list[str]]:
    keys, labels = [], []
    for c in classes:
        for i in range(per_class):
            keys.append(f"{c}-{start + i}")
            labels.append(c)
    return keys, labels


def test_memory_class_balanced_and_rebalanced() -> None:
    mem = RehearsalMemory(budget=20, selection="random", seed=3)
    keys, labels = make_task(["a", "b"], 30)
    mem.add_task(keys, labels)
    assert mem.counts() == {"a": 10, "b": 10} and len(mem) == 20
    first_a = [k for k, lab in mem.items() if lab == "a"]
    keys2, labels2 = make_task(["c", "d", "e"], 30)
    mem.add_task(keys2, labels2)
    assert mem.counts() == {"a": 4, "b": 4, "c": 4, "d": 4, "e": 4}
    # old classes are trimmed, not re-drawn: the kept items are a prefix of the old selection
    assert [k for k, lab in mem.items() if lab == "a"] == first_a[:4]
    assert all(k.startswith(lab + "-") for k, lab in mem.items())


def test_memory_small_classes_and_budget_never_exceeded() -> None:
    mem = RehearsalMemory(budget=7)
    for t, classes in enumerate([["a", "b"], ["c"], ["d", "e", "f"]]):
        keys, labels = make_task(classes, 2 if t == 1 else 9)
        mem.add_task(keys, labels)
        assert len(mem) <= 7
    # 7 over 6 classes: "a" (added first) may keep 2; "c" has only 2 items, the others 1 each
    assert mem.quotas() == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1} and len(mem) == 7


def test_memory_budget_smaller_than_the_classes_is_still_used() -> None:
    """1% of a small corpus can be fewer items than classes: the budget is spread one item
    per class over the classes added first instead of giving every class 0."""
    mem = RehearsalMemory(budget=4)
    for classes in (["a", "b", "c"], ["d", "e", "f"]):
        mem.add_task(*make_task(classes, 5))
    assert mem.counts() == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 0, "f": 0} and len(mem) == 4


def test_memory_from_fraction_and_state(tmp_path) -> None:
    mem = RehearsalMemory.from_fraction(0.01, 23132, selection="random")
    assert mem.budget == 231
    keys, labels = make_task(["a", "b", "c"], 100)
    mem.add_task(keys, labels)
    assert mem.counts() == {"a": 77, "b": 77, "c": 77}
    other = RehearsalMemory(231)
    other.load_state_dict(mem.state_dict())
    assert other.items() == mem.items()
    with pytest.raises(ConfigError, match="budget"):
        RehearsalMemory(10).load_state_dict(mem.state_dict())
    with pytest.raises(ConfigError, match="selection"):
        RehearsalMemory(10, selection="closest")


def test_herding_hand_case() -> None:
    # normalised rows: the class mean is ~(0.8, 0.6)-ish; row 1 is closest, then the pair
    # (0, 2) brackets the mean better than any other second pick.
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    mu = x.mean(0)
    # brute force: pick greedily by explicit distance to the mean
    chosen, running = [], np.zeros(2)
    for j in range(1, 5):
        d = [np.inf if i in chosen else np.linalg.norm(mu - (running + x[i]) / j) for i in range(4)]
        chosen.append(int(np.argmin(d)))
        running += x[chosen[-1]]
    assert herding_selection(x, 4) == chosen
    assert herding_selection(x, 2) == chosen[:2]
    assert chosen[0] in (1, 3)


def test_herding_beats_random_at_matching_the_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)) + np.array([3.0] + [0.0] * 7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    mu = xn.mean(0)
    herd = herding_selection(x, 10)
    assert len(set(herd)) == 10
    err_herd = np.linalg.norm(mu - xn[herd].mean(0))
    err_rand = np.mean([np.linalg.norm(mu - xn[rng.choice(200, 10, replace=False)].mean(0)) for _ in range(50)])
    assert err_herd < 0.5 * err_rand


def test_memory_herding_uses_features() -> None:
    keys, labels = make_task(["a", "b"], 20)
    feats = np.random.default_rng(1).normal(size=(40, 4))
    mem = RehearsalMemory(budget=6, selection="herding")
    mem.add_task(keys, labels, feats)
    expected_a = [keys[i] for i in herding_selection(feats[:20], 3)]
    assert [k for k, lab in mem.items() if lab == "a"] == expected_a
    with pytest.raises(ConfigError, match="features"):
        RehearsalMemory(budget=6, selection="herding").add_task(keys, labels)
