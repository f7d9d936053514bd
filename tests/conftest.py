"""Shared pytest configuration: tests that need an external tool or an optional install.

A test that needs a tool carries its marker (``festival``: the festival binary with its voices
and espeak-ng; ``espeak``: espeak-ng alone; ``make``: GNU make; ``fairseq2``: the usable
fairseq2 data backend of the ``fairseq2`` extra; ``ptxas``: the ptxas bundled with Triton, to
compile GPU kernels without a GPU; ``tmpfs``: mounting a small tmpfs in a user and mount namespace
with ``unshare -rm``, for a real full disk; ``slurm``: a real one-node Slurm cluster started by the
``slurm_cluster`` fixture of ``tests/slurm_cluster.py``, which needs the slurm-wlm and munge packages
and root). All of them are what ``make install`` provides. Outside CI
such a test is skipped when its tool is missing. Under CI (``CI=true``) it always runs, so a missing tool
fails it; and any such test that ends skipped anyway (a ``pytest.skip`` inside a test or
fixture) fails the session. The terminal summary prints one line per tool, e.g. ``tool tests
[festival]: 20 passed, 0 failed, 0 skipped``, which CI logs show.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import slurm_cluster as slurm_test_cluster


def _binaries(*names: str) -> Callable[[], list[str]]:
    return lambda: [b for b in names if shutil.which(b) is None]


def _fairseq2() -> list[str]:
    from speechunits.data.pipeline import fairseq2_unusable

    why = fairseq2_unusable()
    return [f"the fairseq2 backend ({why})"] if why else []


def _ptxas() -> list[str]:
    import triton

    return [] if (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists() else \
        ["Triton's bundled ptxas"]


def _tmpfs() -> list[str]:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {d}"],
                               capture_output=True, check=False) if shutil.which("unshare") else None
    return [] if probe is not None and probe.returncode == 0 else \
        ["a tmpfs mount in a user+mount namespace (`unshare -rm`; util-linux, user namespaces enabled)"]


TOOLS: dict[str, Callable[[], list[str]]] = {
    "festival": _binaries("festival", "espeak-ng"), "espeak": _binaries("espeak-ng"), "make": _binaries("make"),
    "fairseq2": _fairseq2, "ptxas": _ptxas, "tmpfs": _tmpfs, "slurm": slurm_test_cluster.missing,
}
"""Marker -> what the marked tests need, as a function naming what is missing."""

_outcomes: dict[str, Counter[str]] = {marker: Counter() for marker in TOOLS}
_marked: dict[str, str] = {}  # test node id -> its tool marker


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(marker: str) -> list[str]:
    return TOOLS[marker]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(m.args and m.args[0] is True for m in item.iter_markers("skipif")):
            continue  # skipped for a reason of its own (e.g. no CUDA): not a tool test on this machine
        for marker in TOOLS:
            if marker not in item.keywords:
                continue
            _marked[item.nodeid] = marker
            absent = missing(marker)
            if absent and not under_ci():  # under CI the test runs and fails loudly
                item.add_marker(pytest.mark.skip(reason=f"{', '.join(absent)} not installed "
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
    for line in _fixture_times:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurm_test_cluster.SlurmCluster]:
    """A real one-node Slurm (munged, slurmctld, slurmd) for the whole session; ``SLURM_CONF`` and a
    short poll interval are set in this process while it runs (see ``tests/slurm_cluster.py``).
    Its directory is a fresh one under the system temporary directory (munged wants every directory
    above its socket searchable by all, which pytest's own are not), removed at the end."""
    import tempfile

    cluster = slurm_test_cluster.SlurmCluster(Path(tempfile.mkdtemp(prefix="speechunits-slurm-")))
    cluster.start()
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "SPEECHUNITS_SLURM_POLL")}
    os.environ.update(SLURM_CONF=str(cluster.conf), SPEECHUNITS_SLURM_POLL="1")
    try:
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        _fixture_times.append(f"slurm cluster fixture: daemons up and node idle in {cluster.start_seconds:.1f} s, "
                              f"stopped in {cluster.stop_seconds:.1f} s")


_fixture_times: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    skipped = {m: c["skipped"] for m, c in _outcomes.items() if c["skipped"]}
    if under_ci() and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nerror: under CI no tool test may be skipped, but these were: {skipped}")
