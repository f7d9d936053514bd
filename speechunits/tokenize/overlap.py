"""Run post-processing on one worker thread, overlapping the main thread's next step.

:class:`OverlapWorker` wraps a one-thread :class:`concurrent.futures.ThreadPoolExecutor` with a
bounded number of pending tasks: :meth:`OverlapWorker.submit` blocks (and hands back finished
results, in submission order) once ``max_pending`` tasks are queued, so the producer (the
encoder forward pass) can never run far ahead of the consumer (segmentation + writing) and
memory stays bounded. Tasks run strictly in submission order on one thread, so the task code
may use non-thread-safe objects (a file writer) as long as only tasks touch them.

The overlap pays off because the producer's heavy work (torch kernels) and the worker's heavy
work (numba kernels compiled with ``nogil=True``) both release the GIL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class OverlapWorker(Generic[T]):
    """One background thread with at most ``max_pending`` queued tasks (a context manager).

    >>> with OverlapWorker(max_pending=2) as w:
    ...     done = [r for x in range(5) for r in w.submit(lambda v: v * v, x)]
    ...     done += list(w.drain())
    >>> done
    [0, 1, 4, 9, 16]
    """

    def __init__(self, max_pending: int = 2, name: str = "overlap") -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future[T]] = deque()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Iterator[T]:
        """Queue ``fn(*args, **kwargs)``; yields results of the oldest tasks while too many are pending.

        A task's exception is raised here (from the oldest finished task) in the caller's thread.
        The returned generator must be consumed for the bound to hold (``list(w.submit(...))``).
        """
        self._pending.append(self._pool.submit(fn, *args, **kwargs))
        return self._collect(self.max_pending)

    def _collect(self, keep: int) -> Iterator[T]:
        while len(self._pending) > keep:
            yield self._pending.popleft().result()

    def drain(self) -> Iterator[T]:
        """Wait for every pending task; yields their results in submission order."""
        return self._collect(0)

    @property
    def num_pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Cancel tasks not started yet and wait for the running one (no results)."""
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> OverlapWorker[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["OverlapWorker"]
