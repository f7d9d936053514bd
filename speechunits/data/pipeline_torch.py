"""The ``torch.utils.data`` backend of :mod:`speechunits.data.pipeline`: a ``DataLoader``
over one rank's buckets (already planned and sharded), decoding in worker processes.

It needs nothing beyond torch, so the toolkit runs where fairseq2 cannot (another torch
version, no ``fairseq2`` extra). Each pass starts fresh workers and stops them when the pass
ends, is abandoned, or the pipeline is closed; the resumable position is the number of
buckets handed out in the current pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset

from speechunits.errors import ConfigError


class _Buckets(Dataset):
    """Bucket ``j`` -> the loader's output for it (what each worker process computes)."""

    def __init__(self, buckets: Sequence[Sequence[int]], load: Callable[[Sequence[int]], dict[str, Any]]) -> None:
        self.buckets = buckets
        self.load = load

    def __len__(self) -> int:
        return len(self.buckets)

    def __getitem__(self, j: int) -> dict[str, Any]:
        return self.load(self.buckets[j])


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's per-item conversion: none (the loader's output is already final)."""
    return item


class TorchReader:
    """One rank's decoded buckets, in order, from a DataLoader with ``num_workers`` processes."""

    def __init__(self, buckets: Sequence[Sequence[int]], load: Callable[[Sequence[int]], dict[str, Any]], *,
                 num_workers: int, prefetch: int, pin_memory: bool) -> None:
        self._buckets = [list(b) for b in buckets]
        self._load = load
        self._num_workers = num_workers
        self._prefetch_factor = max(1, math.ceil(prefetch / num_workers)) if num_workers else None
        self._pin_memory = pin_memory
        self._position = 0
        self._active: Any = None  # the running DataLoader iterator, to stop its workers on close()

    def batches(self, resume: bool) -> Iterator[dict[str, Any]]:
        """The loader's outputs, from the start or (``resume``) from the loaded position."""
        start = self._position if resume else 0
        self._position = start
        loader = DataLoader(_Buckets(self._buckets[start:], self._load), batch_size=None, shuffle=False,
                            num_workers=self._num_workers, collate_fn=_as_is, pin_memory=self._pin_memory,
                            prefetch_factor=self._prefetch_factor)
        it = iter(loader)
        self._active = it
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    return
                self._position += 1
                yield item
                if self._active is not it:  # close() stopped the workers while the consumer held this batch
                    raise RuntimeError("AudioPipeline was closed during a pass")
        finally:
            self._stop(it)

    def _stop(self, it: Any) -> None:
        """Stop the worker processes of a DataLoader iterator now (not when it is garbage collected)."""
        if self._active is it:
            self._active = None
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()

    def state_dict(self) -> dict[str, Any]:
        """How many buckets of this rank the current pass has handed out."""
        return {"position": self._position, "num_buckets": len(self._buckets)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position from :meth:`state_dict`."""
        position = state.get("position")
        if not isinstance(position, int) or not 0 <= position <= len(self._buckets):
            raise ConfigError(None, f"data pipeline state: position {position!r} is not in [0, {len(self._buckets)}]")
        self._position = position

    def close(self) -> None:
        """Stop the workers of a pass in progress."""
        if self._active is not None:
            self._stop(self._active)
