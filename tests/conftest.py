"""Shared pytest configuration: tests that need an external tool.

A test that needs a tool carries its marker (``festival``: the festival binary with its voices
and espeak-ng; ``espeak``: espeak-ng alone; ``make``: GNU make). Outside CI such a test is
skipped when its tool is missing. Under CI (``CI=true``) it always runs, so a missing tool
fails it; and any such test that ends skipped anyway (a ``pytest.skip`` inside a test or
fixture) fails the session. The terminal summary prints one line per tool, e.g. ``tool tests
[festival]: 20 passed, 0 failed, 0 skipped``, which CI logs show.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

TOOLS: dict[str, tuple[str, ...]] = {"festival": ("festival", "espeak-ng"), "espeak": ("espeak-ng",), "make": ("make",)}
"""Marker -> binaries the marked tests need on PATH."""

_outcomes: dict[str, Counter[str]] = {marker: Counter() for marker in TOOLS}
_marked: dict[str, str] = {}  # test node id -> its tool marker


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_binaries(marker: str) -> list[str]:
    return [b for b in TOOLS[marker] if shutil.which(b) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in TOOLS:
            if marker not in item.keywords:
                continue
            _marked[item.nodeid] = marker
            missing = missing_binaries(marker)
            if missing and not under_ci():  # under CI the test runs and fails loudly
                item.add_marker(pytest.mark.skip(reason=f"{', '.join(missing)} not installed "
                                                        "(make install installs it)"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    marker = _marked.get(report.nodeid)
    if marker is None:
        return
    if report.skipped:
        _outcomes[marker]["skipped"] += 1
    elif report.failed:
        _outcomes[marker]["failed"] += 1
    elif report.when == "call":
        _outcomes[marker]["passed"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for marker, counts in _outcomes.items():
        if sum(counts.values()):
            terminalreporter.write_line(f"tool tests [{marker}]: {counts['passed']} passed, {counts['failed']} failed, "
                                        f"{counts['skipped']} skipped")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    skipped = {m: c["skipped"] for m, c in _outcomes.items() if c["skipped"]}
    if under_ci() and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nerror: under CI no tool test may be skipped, but these were: {skipped}")
