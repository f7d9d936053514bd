"""Stop requests by signal during :meth:`Trainer.fit <speechunits.train.loop.Trainer.fit>`.

Slurm sends SIGTERM before it kills a job (preemption, ``scancel``, the time limit) and, with
``sbatch --signal=USR1@SECONDS``, SIGUSR1 some time before the limit. While ``fit`` runs in the
main thread, :class:`StopSignals` replaces the handlers of both by one that only records the
signal; ``fit`` asks :meth:`StopSignals.agreed` at each step boundary, checkpoints and leaves
with exit status ``128 + signum``. The previous handlers come back when ``fit`` ends.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from speechunits.train.distributed import all_reduce_max

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None
)


class StopSignals:
    """Record SIGTERM / SIGUSR1 while active (a context manager); never raises in the handler.

    Outside the main thread Python cannot install signal handlers: then nothing is installed
    and :meth:`agreed` reports only what other ranks saw.
    """

    def __init__(self, distributed: bool) -> None:
        self.distributed = distributed
        self.received = 0  # the first signal this process got (0: none)
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> StopSignals:
        """Replace the handlers (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the handlers back that were there before (idempotent)."""
        while self._previous:
            sig, previous = self._previous.popitem()
            # None: a handler installed from C, which Python cannot reinstall; the default is closest
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            self.received = signum

    def agreed(self) -> int:
        """The signal every rank stops for, 0 for none: the highest number any rank received
        (collective when distributed: one all-reduce of one number, so every rank must call it
        at the same step)."""
        if not self.distributed:
            return self.received
        return int(all_reduce_max(float(self.received)))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
