"""The fairseq2 backend of :mod:`speechunits.data.pipeline`: ``read_sequence(buckets)
.shard(rank, world_size, allow_uneven=not drop_remainder) .map(load, num_parallel_calls)
.prefetch(prefetch)``, decoding in fairseq2's worker threads.

fairseq2 (whose native part, fairseq2n, is built for one torch version) is imported only when
a :class:`Fairseq2Reader` is made, i.e. once this backend is chosen, never when a speechunits
module is imported: the toolkit must import where fairseq2 is absent or does not match torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairseq2.data.data_pipeline import DataPipeline


class Fairseq2Reader:
    """One rank's decoded buckets from a fairseq2 data pipeline; the position is fairseq2's own state."""

    def __init__(self, buckets: Sequence[Sequence[int]], load: Callable[[Sequence[int]], dict[str, Any]], *,
                 rank: int, world_size: int, drop_remainder: bool, num_parallel_calls: int, prefetch: int) -> None:
        from fairseq2.data.data_pipeline import read_sequence

        self._pipeline: DataPipeline | None = (
            read_sequence([list(b) for b in buckets])
            .shard(rank, world_size, allow_uneven=not drop_remainder)
            .map(load, num_parallel_calls=max(1, num_parallel_calls))
            .prefetch(prefetch)
            .and_return()
        )

    def batches(self, resume: bool) -> Iterator[dict[str, Any]]:
        """The loader's outputs, from the start or (``resume``) from the loaded state."""
        if self._pipeline is None:
            raise RuntimeError("AudioPipeline is closed")
        if not resume:
            self._pipeline.reset()
        yield from self._pipeline

    def state_dict(self) -> dict[str, Any]:
        """fairseq2's pipeline state (it accounts for what is prefetched but not yet handed out)."""
        assert self._pipeline is not None
        return {"fairseq2": self._pipeline.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        assert self._pipeline is not None
        self._pipeline.load_state_dict(state["fairseq2"])

    def close(self) -> None:
        """Drop the pipeline, which stops its threads now (left to interpreter exit, fairseq2n 0.8.1 can crash)."""
        self._pipeline = None
