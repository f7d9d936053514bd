"""Plain numpy version of the greedy Sylber segmentation: the bit-exact test oracle.

The algorithm of :mod:`speechunits.sylber.segment` (see its docstring) with every
floating-point operation and its order fixed: float64 accumulation of the float32 features;
dot products summed in 8 interleaved lanes (lane ``j`` takes indices ``k = j (mod 8)`` in
order), lanes combined as ``((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))``, then the ``d mod 8`` tail
(summed in order); segment sums add frames in time order and are recomputed after a boundary
moves; the running mean is the reference's (``(mean * cnt + x) / (cnt + 1)``). Sums whose
order matters use ``np.add.accumulate``, which adds strictly left to right, so the output is
the same on every machine: it defines the test fixtures (``tests/data/greedy_segment_vectors.npz``).
The fast numba kernel reorders and fuses these sums (SIMD), so it matches this oracle only up
to rounding; the tests pin down where that is exact. One Python step per frame, like the
original reference: a test and benchmark tool, not a production path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from speechunits.sylber.segment import NORM_EPS, _check_thresholds, as_states
from speechunits.sylber.thresholds import DEFAULT_MERGE_THRESHOLD, DEFAULT_NORM_THRESHOLD

__all__ = ["greedy_segment_reference", "lane_dot_rows"]

_CHUNK = 4096  # frames per chunk when computing all frame norms (bounds float64 temporaries)


def lane_dot_rows(rows: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Row-wise dot products ``rows @ vec`` (float64) in the kernel's fixed 8-lane order.

    Lane ``j`` sums the products at indices ``j, j+8, j+16, ...`` in order; the lanes are
    combined as ``((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`` and the ``d mod 8`` tail, summed in
    order, is added last.
    """
    prod = np.asarray(rows, np.float64) * np.asarray(vec, np.float64)
    return _lane_sum(prod)


def _lane_sum(prod: np.ndarray) -> np.ndarray:
    m, d = prod.shape
    d8 = d - d % 8
    out = None
    if d8:
        lanes = np.add.accumulate(prod[:, :d8].reshape(m, d8 // 8, 8), axis=1)[:, -1, :]
        out = ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + (
            (lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7])
        )
    if d8 < d:
        tail = np.add.accumulate(prod[:, d8:], axis=1)[:, -1]
        out = tail if out is None else out + tail
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(_lane_sum((np.asarray(a, np.float64) * np.asarray(b, np.float64))[None, :])[0])


def _frame_sum(x: np.ndarray, s: int, e: int) -> np.ndarray:
    """x[s] + ... + x[e-1] in float64, in time order."""
    return np.add.accumulate(x[s:e].astype(np.float64), axis=0)[-1]


def _sq_norms(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], np.float64)
    for c in range(0, x.shape[0], _CHUNK):
        rows = x[c : c + _CHUNK].astype(np.float64)
        out[c : c + _CHUNK] = _lane_sum(rows * rows)
    return out


def greedy_segment_reference(
    states: Any,
    norm_threshold: float = DEFAULT_NORM_THRESHOLD,
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
    *,
    reset_count: bool = False,
) -> np.ndarray:
    """(N, 2) int64 ``[start, end)`` segments; same contract as ``greedy_segment``."""
    x = as_states(states)
    nt, mt = _check_thresholds(norm_threshold, merge_threshold)
    T = x.shape[0]
    if T == 0:
        return np.zeros((0, 2), np.int64)
    eps = NORM_EPS
    n2 = _sq_norms(x)
    speech = np.sqrt(n2 + eps) >= nt

    # greedy sweep
    starts: list[int] = []
    ends: list[int] = []
    mids: list[tuple[int, int]] = []  # (boundary frame, index of the segment it closes)
    curr = np.zeros(x.shape[1], np.float64)
    c2 = 0.0
    s, cnt = -1, 0
    for i in range(T):
        if not speech[i]:
            if s > -1:
                starts.append(s)
                ends.append(i)
            s, cnt = -1, 0
            continue
        xi = x[i].astype(np.float64)
        if cnt == 0:
            curr, c2, cnt, s = xi, float(n2[i]), 1, i
            continue
        sim = _dot(curr, xi) / math.sqrt(c2 + eps) / math.sqrt(float(n2[i]) + eps)
        if sim >= mt:
            curr = (curr * float(cnt) + xi) / float(cnt + 1)
            c2 = _dot(curr, curr)
            cnt += 1
        else:
            curr, c2 = xi, float(n2[i])
            cnt = 1 if reset_count else cnt + 1
            starts.append(s)
            ends.append(i)
            mids.append((i, len(starts) - 1))
            s = i
    if s > -1:
        starts.append(s)
        ends.append(T)

    # merge or refine each mid-speech boundary
    merged = [False] * len(starts)
    cur_sum = None
    carried = -1
    for bd, k in mids:
        if carried != k:
            cur_sum = _frame_sum(x, starts[k], ends[k])
        len_k = ends[k] - starts[k]
        len_n = ends[k + 1] - starts[k + 1]
        nxt_sum = _frame_sum(x, starts[k + 1], ends[k + 1])
        a = cur_sum / float(len_k)
        b = nxt_sum / float(len_n)
        a2, b2 = _dot(a, a), _dot(b, b)
        if _dot(a, b) / math.sqrt(a2 + eps) / math.sqrt(b2 + eps) >= mt:
            starts[k + 1] = starts[k]
            merged[k] = True
            cur_sum = cur_sum + nxt_sum
            carried = k + 1
            continue
        lo = max(starts[k], bd - max(1, len_k // 2))
        hi = min(ends[k + 1], bd + max(1, len_n // 2))
        win = x[lo:hi]
        nf = np.sqrt(n2[lo:hi] + eps)
        sp = lane_dot_rows(win, a) / nf / math.sqrt(a2 + eps)
        sn = lane_dot_rows(win, b) / nf / math.sqrt(b2 + eps)
        suffix = np.add.accumulate(sn[::-1])[::-1]  # sum(sn[j:])
        prefix = np.concatenate(([0.0], np.add.accumulate(sp)[:-1]))  # sum(sp[:j])
        ob = lo + int(np.argmax(prefix + suffix))
        ends[k] = ob
        starts[k + 1] = ob
        cur_sum = _frame_sum(x, ob, ends[k + 1])
        carried = k + 1

    rows = [(s_, e_) for j, (s_, e_) in enumerate(zip(starts, ends)) if not merged[j] and e_ > s_]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)
