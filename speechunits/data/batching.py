"""Length-bucketed batches under a padded-size budget: the one packing loop of every batcher that
bounds ``len(batch) * longest item`` (audio pipeline, CTC judge, TTS, unit LM training and scoring)."""

from __future__ import annotations

from collections.abc import Sequence


def pack_by_frames(order: Sequence[int], lengths: Sequence[int], max_frames: int,
                   max_utts: int | None = None, *, max_padding: float | None = None) -> list[list[int]]:
    """Cut ``order`` (indices, usually length-sorted) into consecutive batches whose padded
    size ``len(batch) * longest`` stays within ``max_frames`` (a longer utterance alone is
    a batch of one) and, when given, ``max_utts`` rows and padding ratio
    ``1 - sum(lengths) / (len(batch) * longest) <= max_padding`` (padding is wasted compute)."""
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    total = 0
    for i in order:
        n = int(lengths[i])
        grown = max(longest, n)
        padded = grown * (len(cur) + 1)
        if cur and (padded > max_frames or (max_utts is not None and len(cur) >= max_utts)
                    or (max_padding is not None and padded - (total + n) > max_padding * padded)):
            batches.append(cur)
            cur, grown, total = [], n, 0
        cur.append(i)
        longest = grown
        total += n
    if cur:
        batches.append(cur)
    return batches
