"""CTC decoding of one utterance's ``[T, V]`` log-probabilities (blank 0): greedy (best
path) and prefix beam search without a language model."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

NEG_INF = -math.inf


def _as_array(log_probs: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(log_probs, Tensor):
        log_probs = log_probs.detach().float().cpu().numpy()
    arr = np.asarray(log_probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected [frames, vocab] log-probabilities, got shape {arr.shape}")
    return arr


def greedy_decode(log_probs: np.ndarray | Tensor) -> list[int]:
    """Best class per frame, repeats merged, blanks removed."""
    best = _as_array(log_probs).argmax(axis=1)
    out: list[int] = []
    prev = 0
    for k in best.tolist():
        if k != prev and k != 0:
            out.append(k)
        prev = k
    return out


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: np.ndarray | Tensor, beam: int = 8, prune: float = -12.0) -> list[int]:
    """The label sequence of highest total CTC probability among ``beam`` kept prefixes.

    Each prefix carries two log-probabilities: of the frames so far ending in blank and
    ending in its last label. Per frame, labels below ``prune`` (log-prob) are not expanded,
    except the frame's best label. ``beam=1`` may differ from :func:`greedy_decode`: it keeps
    the single most probable prefix, summed over alignments."""
    lp = _as_array(log_probs)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in lp:
        cands = [int(k) for k in np.nonzero(frame >= prune)[0] if k != 0]
        top = int(frame.argmax())
        if top != 0 and top not in cands:
            cands.append(top)
        blank = float(frame[0])
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], pb: float, pnb: float) -> None:
            cur = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            cur[0] = _logadd(cur[0], pb)
            cur[1] = _logadd(cur[1], pnb)

        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            add(prefix, total + blank, NEG_INF)           # stay, emitting blank
            last = prefix[-1] if prefix else None
            for k in cands:
                p = float(frame[k])
                if k == last:
                    add(prefix, NEG_INF, pnb + p)         # repeat merged into the last label
                    add(prefix + (k,), NEG_INF, pb + p)   # a new label after a blank
                else:
                    add(prefix + (k,), NEG_INF, total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(kv[1][0], kv[1][1]), reverse=True)[:beam]
        beams = {prefix: (v[0], v[1]) for prefix, v in ranked}
    best = max(beams.items(), key=lambda kv: _logadd(kv[1][0], kv[1][1]))
    return list(best[0])


def ctc_decode(log_probs: np.ndarray | Tensor, beam: int = 1) -> list[int]:
    """Greedy for ``beam <= 1``, prefix beam search otherwise."""
    return greedy_decode(log_probs) if beam <= 1 else prefix_beam_search(log_probs, beam)
