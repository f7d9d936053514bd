"""Kill points: named places where a crash test may SIGKILL the running job (a test hook).

A long job calls :func:`kill_point` at the moments a crash is most likely to lose or corrupt
work: just before an atomic write's rename (the temporary file complete, the final name not yet
there), just after it, after each appended line of a resumable shard, between the steps of a
merge, after each training step. Normally the call does nothing (one dictionary look-up).

Two environment variables, read once when the process starts, turn it on:

* ``SPEECHUNITS_KILL_TRACE=PATH``: every call appends ``pid<TAB>key<TAB>detail`` to ``PATH``
  (the key is ``name`` plus the detail's stratum, below), so a harness learns which points an
  uninterrupted run passes and how often.
* ``SPEECHUNITS_KILL_AT=KEY#K``: the process SIGKILLs its whole process group at the ``K``-th
  call (1-based, counted per process) whose key is ``KEY``. A harness starts the job in a new
  session, so the job and its local shard jobs die together, as when a node fails. With
  ``torn`` given (a function that writes part of a record), the call first runs it, so the kill
  leaves a half-written line, as a crash in the middle of a write does.

The detail (a file name, a step) is reduced to a stratum by replacing its digits with ``#``
(``units.0.jsonl`` and ``units.1.jsonl`` are one stratum), so a harness can draw kill points
stratum by stratum and reach the rare ones (the final merge) as often as the common ones.

``tests/chaos/`` and ``benchmarks/chaos.py`` use this; docs/reliability.md describes them.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Callable

KILL_AT_ENV = "SPEECHUNITS_KILL_AT"
TRACE_ENV = "SPEECHUNITS_KILL_TRACE"

_TRACE = os.environ.get(TRACE_ENV) or None
_TARGET: tuple[str, int] | None = None
_counts: Counter[str] = Counter()


def parse_target(spec: str) -> tuple[str, int]:
    """``KEY#K`` -> ``(KEY, K)``; a ValueError for anything else."""
    key, sep, count = spec.rpartition("#")
    if not sep or not key or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{KILL_AT_ENV} must be KEY#K with K >= 1, got {spec!r}")
    return key, int(count)


if os.environ.get(KILL_AT_ENV):
    _TARGET = parse_target(os.environ[KILL_AT_ENV])


def point_key(name: str, detail: str = "") -> str:
    """The key of a kill point: ``name``, plus ``:stratum`` (the detail with digits as ``#``) when there is a detail."""
    return f"{name}:{re.sub(r'[0-9]', '#', detail)}" if detail else name


def armed() -> bool:
    """True when kill points trace or kill in this process (the caller may then do extra work, e.g. flush)."""
    return _TRACE is not None or _TARGET is not None


def kill_point(name: str, detail: str = "", torn: Callable[[], None] | None = None) -> None:
    """A place where a crash test may kill this job (see the module docstring); a no-op otherwise."""
    if _TRACE is None and _TARGET is None:
        return
    key = point_key(name, detail)
    if _TRACE is not None:
        fd = os.open(_TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{os.getpid()}\t{key}\t{detail}\n".encode())
        finally:
            os.close(fd)
    if _TARGET is not None and _TARGET[0] == key:
        _counts[key] += 1
        if _counts[key] == _TARGET[1]:
            if torn is not None:
                torn()
            os.killpg(os.getpgrp(), signal.SIGKILL)


__all__ = ["KILL_AT_ENV", "TRACE_ENV", "armed", "kill_point", "parse_target", "point_key"]
