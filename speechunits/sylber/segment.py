"""Greedy linear-time syllable segmentation of frame features (Sylber), compiled with numba.

The algorithm follows the public Sylber reference (Cho et al., ICLR 2025):

1. **Speech mask.** A frame is speech when ``sqrt(|x|^2 + 1e-8) >= norm_threshold``.
2. **Greedy sweep.** Left to right over speech frames, keeping the running mean of the current
   segment. A frame joins the segment when ``cos(mean, frame) >= merge_threshold``; otherwise
   it starts a new segment (a *mid-speech boundary*). Non-speech frames close segments.
   Reference quirk (kept by default): after a mid-speech split the running count is *not*
   reset to 1, so the next merges weight the first frame of the new segment by the old count.
   ``reset_count=True`` gives the corrected variant.
3. **Merge / refine**, once per mid-speech boundary, left to right: if the means of the two
   segments on either side have ``cos >= merge_threshold`` they are merged; otherwise the
   boundary moves, within half of each neighbour, to the position maximising
   ``sum(cos(frame, left mean)) + sum(cos(frame, right mean))`` over the frames it assigns to
   each side (first maximum wins).

Everything runs in time linear in the number of frames: segment sums are carried across merged
boundaries instead of being recomputed, the boundary sweep uses prefix sums, and the kernel
handles each boundary as soon as the segment after it closes (one streaming, cache-friendly
pass; same order, same result as handling them all after the sweep).

Arithmetic is fixed so that :mod:`speechunits.sylber.segment_reference` (plain numpy) gives
bit-identical results: float64 accumulation of the float32 features; dot products summed in 8
interleaved lanes (lane ``j`` takes indices ``k = j (mod 8)`` in order), lanes combined as
``((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))``, then the ``d mod 8`` tail (summed in order) is added;
segment sums add frames in time order. ``fastmath`` stays off so LLVM keeps that order.

Zero-length segments, which the reference can emit only for degenerate settings
(``merge_threshold`` at or above 1), are dropped.

Public API: :func:`greedy_segment`, :func:`greedy_segment_batch`, :func:`segment_means`,
:func:`segments_to_seconds`. Nothing is compiled at import; the first call compiles (cached on
disk with ``cache=True``, in the user cache directory of :mod:`speechunits.numba_cache`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from speechunits.sylber.thresholds import DEFAULT_MERGE_THRESHOLD, DEFAULT_NORM_THRESHOLD

NORM_EPS = 1e-8
"""Added to squared norms before the square root, as in the reference's cosine similarity."""

LANES = 8
"""Number of interleaved accumulators of every dot product (fixes the summation order)."""

__all__ = [
    "greedy_segment",
    "greedy_segment_batch",
    "segment_means",
    "segments_to_seconds",
    "as_states",
]


# --------------------------------------------------------------------------------------------
# input validation (shared with segment_reference)
# --------------------------------------------------------------------------------------------


def as_states(states: Any, name: str = "states") -> np.ndarray:
    """Return ``states`` as a C-contiguous finite float32 (T, d) array, or raise.

    Accepts numpy arrays and torch tensors (detached, moved to CPU) of any real floating dtype.
    Raises ``TypeError`` for non-floating data and ``ValueError`` for a wrong shape or
    non-finite values.
    """
    arr = _to_numpy(states)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (frames, dim) array, got shape {arr.shape}")
    arr = _float32_features(arr, name)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name}: non-finite value (NaN/inf, or too large for float32) at frame {bad}")
    return arr


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_thresholds(norm_threshold: float, merge_threshold: float) -> tuple[float, float]:
    nt, mt = float(norm_threshold), float(merge_threshold)
    if not math.isfinite(nt) or nt < 0.0:
        raise ValueError(f"norm_threshold must be a finite number >= 0, got {norm_threshold!r}")
    if not math.isfinite(mt) or not -1.0 <= mt <= 1.0:
        raise ValueError(f"merge_threshold must be a cosine in [-1, 1], got {merge_threshold!r}")
    return nt, mt


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False, nogil=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:  # pragma: no cover - compiled
    """float64 dot product in the fixed 8-lane order (see module docstring)."""
    d = a.shape[0]
    d8 = d - d % 8
    r = 0.0
    if d8 > 0:
        l0 = np.float64(a[0]) * np.float64(b[0])
        l1 = np.float64(a[1]) * np.float64(b[1])
        l2 = np.float64(a[2]) * np.float64(b[2])
        l3 = np.float64(a[3]) * np.float64(b[3])
        l4 = np.float64(a[4]) * np.float64(b[4])
        l5 = np.float64(a[5]) * np.float64(b[5])
        l6 = np.float64(a[6]) * np.float64(b[6])
        l7 = np.float64(a[7]) * np.float64(b[7])
        for k in range(8, d8, 8):
            l0 += np.float64(a[k]) * np.float64(b[k])
            l1 += np.float64(a[k + 1]) * np.float64(b[k + 1])
            l2 += np.float64(a[k + 2]) * np.float64(b[k + 2])
            l3 += np.float64(a[k + 3]) * np.float64(b[k + 3])
            l4 += np.float64(a[k + 4]) * np.float64(b[k + 4])
            l5 += np.float64(a[k + 5]) * np.float64(b[k + 5])
            l6 += np.float64(a[k + 6]) * np.float64(b[k + 6])
            l7 += np.float64(a[k + 7]) * np.float64(b[k + 7])
        r = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
    if d8 < d:
        t = np.float64(a[d8]) * np.float64(b[d8])
        for k in range(d8 + 1, d):
            t += np.float64(a[k]) * np.float64(b[k])
        r = r + t if d8 > 0 else t
    return r


@njit(cache=True, fastmath=False, nogil=True)
def _sum_frames(x: np.ndarray, s: int, e: int, out: np.ndarray) -> None:  # pragma: no cover
    """out[:] = x[s] + x[s+1] + ... + x[e-1] in float64, in time order (requires e > s)."""
    d = x.shape[1]
    for k in range(d):
        out[k] = np.float64(x[s, k])
    for t in range(s + 1, e):
        for k in range(d):
            out[k] += np.float64(x[t, k])


@njit(cache=True, fastmath=False, nogil=True)
def _process_boundary(
    x: np.ndarray, n2: np.ndarray, starts: np.ndarray, ends: np.ndarray, merged: np.ndarray,
    k: int, bd: int, mt: float, carried: int, cur_sum: np.ndarray, nxt_sum: np.ndarray,
    a: np.ndarray, b: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Merge segments k and k+1 or move their boundary ``bd``; returns the segment in cur_sum.

    ``cur_sum`` holds the frame sum of segment ``carried`` (its current extent).
    """
    eps = 1e-8
    d = x.shape[1]
    if carried != k:
        _sum_frames(x, starts[k], ends[k], cur_sum)
    len_k = ends[k] - starts[k]
    len_n = ends[k + 1] - starts[k + 1]
    _sum_frames(x, starts[k + 1], ends[k + 1], nxt_sum)
    fk = np.float64(len_k)
    fn = np.float64(len_n)
    for j in range(d):
        a[j] = cur_sum[j] / fk
        b[j] = nxt_sum[j] / fn
    a2 = _dot(a, a)
    b2 = _dot(b, b)
    if _dot(a, b) / math.sqrt(a2 + eps) / math.sqrt(b2 + eps) >= mt:
        starts[k + 1] = starts[k]
        merged[k] = True
        for j in range(d):
            cur_sum[j] = cur_sum[j] + nxt_sum[j]
        return k + 1
    lo = max(starts[k], bd - max(1, len_k // 2))
    hi = min(ends[k + 1], bd + max(1, len_n // 2))
    w = hi - lo
    na = math.sqrt(a2 + eps)
    nb = math.sqrt(b2 + eps)
    sp = np.empty(w, np.float64)
    suf = np.empty(w, np.float64)
    for j in range(w):
        xf = x[lo + j]
        nf = math.sqrt(n2[lo + j] + eps)
        sp[j] = _dot(xf, a) / nf / na
        suf[j] = _dot(xf, b) / nf / nb
    for j in range(w - 2, -1, -1):  # suffix sums of the right-side similarities
        suf[j] = suf[j] + suf[j + 1]
    best = 0.0 + suf[0]
    arg = 0
    p = 0.0
    for j in range(1, w):  # f(j) = sum(sp[:j]) + sum(sn[j:]); first maximum wins
        p = sp[0] if j == 1 else p + sp[j - 1]
        f = p + suf[j]
        if f > best:
            best = f
            arg = j
    ob = lo + arg
    ends[k] = ob
    starts[k + 1] = ob
    _sum_frames(x, ob, ends[k + 1], cur_sum)
    return k + 1


@njit(cache=True, fastmath=False, nogil=True)
def _close_segment(
    x: np.ndarray, n2: np.ndarray, starts: np.ndarray, ends: np.ndarray, merged: np.ndarray,
    nseg: int, s: int, e: int, split_open: bool, mt: float, carried: int, cur_sum: np.ndarray,
    nxt_sum: np.ndarray, a: np.ndarray, b: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Append segment [s, e); if it began at a mid-speech split, settle that boundary now.

    Returns (number of segments, index of the segment whose frame sum is in ``cur_sum``).
    """
    starts[nseg] = s
    ends[nseg] = e
    nseg += 1
    if split_open:
        carried = _process_boundary(x, n2, starts, ends, merged, nseg - 2, s, mt, carried,
                                    cur_sum, nxt_sum, a, b)
    return nseg, carried


@njit(cache=True, fastmath=False, nogil=True)
def _segment_core(
    x: np.ndarray, nt: float, mt: float, reset_count: bool, out: np.ndarray, out_off: int
) -> int:  # pragma: no cover - compiled
    """Segment one utterance ``x`` (T, d) float32; write rows into ``out[out_off:]``.

    One streaming pass: a mid-speech boundary is merged/refined as soon as the segment after
    it closes (the reference does all boundaries after the sweep, in the same order; the
    result is the same, but the frames involved are still in cache). Returns the number of
    segments written (at most T).
    """
    T, d = x.shape
    if T == 0:
        return 0
    eps = 1e-8
    n2 = np.empty(T, np.float64)
    starts = np.empty(T, np.int64)
    ends = np.empty(T, np.int64)
    merged = np.zeros(T, np.bool_)
    curr = np.zeros(d, np.float64)
    cur_sum = np.empty(d, np.float64)
    nxt_sum = np.empty(d, np.float64)
    a = np.empty(d, np.float64)
    b = np.empty(d, np.float64)
    carried = -1
    c2 = 0.0
    nseg = 0
    s = -1
    cnt = 0
    split_open = False  # the open segment started at a mid-speech boundary (at s)
    for i in range(T):
        xi = x[i]
        n2[i] = _dot(xi, xi)
        if not (math.sqrt(n2[i] + eps) >= nt):
            if s > -1:
                nseg, carried = _close_segment(x, n2, starts, ends, merged, nseg, s, i, split_open, mt, carried,
                                               cur_sum, nxt_sum, a, b)
            s = -1
            cnt = 0
            split_open = False
            continue
        if cnt == 0:
            for k in range(d):
                curr[k] = np.float64(xi[k])
            c2 = n2[i]
            cnt = 1
            s = i
            continue
        sim = _dot(curr, xi) / math.sqrt(c2 + eps) / math.sqrt(n2[i] + eps)
        if sim >= mt:
            fc = np.float64(cnt)
            fc1 = np.float64(cnt + 1)
            for k in range(d):
                curr[k] = (curr[k] * fc + np.float64(xi[k])) / fc1
            c2 = _dot(curr, curr)
            cnt += 1
        else:
            for k in range(d):
                curr[k] = np.float64(xi[k])
            c2 = n2[i]
            cnt = 1 if reset_count else cnt + 1
            nseg, carried = _close_segment(x, n2, starts, ends, merged, nseg, s, i, split_open, mt, carried,
                                           cur_sum, nxt_sum, a, b)
            s = i
            split_open = True
    if s > -1:
        nseg, carried = _close_segment(x, n2, starts, ends, merged, nseg, s, T, split_open, mt, carried,
                                       cur_sum, nxt_sum, a, b)

    n = 0
    for j in range(nseg):
        if not merged[j] and ends[j] > starts[j]:
            out[out_off + n, 0] = starts[j]
            out[out_off + n, 1] = ends[j]
            n += 1
    return n


@njit(cache=True, fastmath=False, nogil=True)
def _segment_single(x: np.ndarray, nt: float, mt: float, reset_count: bool) -> np.ndarray:  # pragma: no cover
    out = np.empty((x.shape[0], 2), np.int64)
    n = _segment_core(x, nt, mt, reset_count, out, 0)
    return out[:n].copy()


@njit(cache=True, fastmath=False, parallel=True)
def _segment_flat(
    flat: np.ndarray, offsets: np.ndarray, nt: np.ndarray, mt: np.ndarray, reset_count: bool, out: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """CSR batch: utterance u is ``flat[offsets[u]:offsets[u+1]]``; rows go to out[offsets[u]:]."""
    nb = offsets.shape[0] - 1
    counts = np.zeros(nb, np.int64)
    for u in prange(nb):
        s = offsets[u]
        e = offsets[u + 1]
        counts[u] = _segment_core(flat[s:e], nt[u], mt[u], reset_count, out, s)
    return counts


@njit(cache=True, fastmath=False, parallel=True)
def _segment_padded(
    padded: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, nt: np.ndarray, mt: np.ndarray,
    reset_count: bool, out: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Padded batch (B, T, d): utterance u is ``padded[u, :lengths[u]]``; rows to out[offsets[u]:]."""
    nb = padded.shape[0]
    counts = np.zeros(nb, np.int64)
    for u in prange(nb):
        counts[u] = _segment_core(padded[u, : lengths[u]], nt[u], mt[u], reset_count, out, offsets[u])
    return counts


@njit(cache=True, fastmath=False, nogil=True)
def _means(x: np.ndarray, segments: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = segments.shape[0]
    d = x.shape[1]
    out = np.empty((n, d), np.float32)
    acc = np.empty(d, np.float64)
    for i in range(n):
        s = segments[i, 0]
        e = segments[i, 1]
        _sum_frames(x, s, e, acc)
        f = np.float64(e - s)
        for k in range(d):
            out[i, k] = np.float32(acc[k] / f)
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def greedy_segment(
    states: Any,
    norm_threshold: float = DEFAULT_NORM_THRESHOLD,
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
    *,
    reset_count: bool = False,
) -> np.ndarray:
    """Syllable segments of one utterance's frame features.

    Args:
        states: (T, d) features (numpy array or torch tensor; converted to float32).
        norm_threshold: frames with L2 norm >= this are speech.
        merge_threshold: cosine similarity needed to join / merge segments.
        reset_count: reset the running count after a mid-speech split (the reference does not).

    Returns:
        (N, 2) int64 ``[start, end)`` frame indices, sorted, non-overlapping, speech only.
    """
    x = as_states(states)
    nt, mt = _check_thresholds(norm_threshold, merge_threshold)
    if x.shape[0] == 0:
        return np.zeros((0, 2), np.int64)
    return _segment_single(x, nt, mt, bool(reset_count))


def _per_utt(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or one value per utterance ({n}), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _lengths_array(lengths: Any, n: int, max_len: int | None, name: str = "lengths") -> np.ndarray:
    arr = np.asarray(_to_numpy(lengths))
    if arr.ndim != 1 or (n >= 0 and arr.shape[0] != n):
        raise ValueError(f"{name}: expected a 1-D array of {n} lengths, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.asarray(arr, np.float64) == np.round(np.asarray(arr, np.float64))):
            raise ValueError(f"{name}: lengths must be integers, got {arr.dtype} values")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError(f"{name}: negative length {int(arr.min())}")
    if max_len is not None and (arr > max_len).any():
        raise ValueError(f"{name}: length {int(arr.max())} exceeds the padded length {max_len}")
    return arr


def greedy_segment_batch(
    states: Any,
    lengths: Any = None,
    norm_threshold: float | Sequence[float] | np.ndarray = DEFAULT_NORM_THRESHOLD,
    merge_threshold: float | Sequence[float] | np.ndarray = DEFAULT_MERGE_THRESHOLD,
    *,
    reset_count: bool = False,
) -> list[np.ndarray]:
    """Segment many utterances in one parallel numba call (``prange`` over utterances).

    ``states`` is one of:

    * a list/tuple of (T_i, d) arrays (concatenated once into the flat layout);
    * a flat (sum T_i, d) array with ``lengths`` (CSR layout, no copy when already float32);
    * a padded (B, T, d) array with ``lengths`` (None = every row full); padding is ignored.

    Thresholds are scalars or one value per utterance. Returns one (N_i, 2) int64 array per
    utterance, equal to :func:`greedy_segment` on that utterance.
    """
    reset = bool(reset_count)
    if isinstance(states, (list, tuple)):
        utts = [as_states(s, name=f"states[{i}]") for i, s in enumerate(states)]
        if lengths is not None:
            given = _lengths_array(lengths, len(utts), None)
            if any(int(g) != u.shape[0] for g, u in zip(given, utts)):
                raise ValueError("lengths: do not match the lengths of the given arrays")
        dims = {u.shape[1] for u in utts}
        if len(dims) > 1:
            raise ValueError(f"states: utterances have different feature dimensions {sorted(dims)}")
        if not utts:
            return []
        lens = np.array([u.shape[0] for u in utts], np.int64)
        flat = np.concatenate(utts, axis=0) if len(utts) > 1 else utts[0]
        return _run_flat(flat, lens, norm_threshold, merge_threshold, reset)

    arr = _to_numpy(states)
    if arr.ndim == 3:
        padded = _as_padded(arr)
        b, t = padded.shape[:2]
        lens = np.full(b, t, np.int64) if lengths is None else _lengths_array(lengths, b, t)
        nt = _per_utt(norm_threshold, b, "norm_threshold")
        mt = _per_utt(merge_threshold, b, "merge_threshold")
        _check_many(nt, mt)
        offsets = np.zeros(b + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        out = np.empty((int(offsets[-1]), 2), np.int64)
        if b == 0:
            return []
        counts = _segment_padded(padded, lens, offsets, nt, mt, reset, out)
        return _split(out, offsets, counts)
    if arr.ndim == 2:
        if lengths is None:
            raise ValueError("lengths: required with a flat (sum T, d) array")
        flat = as_states(arr)
        lens = _lengths_array(lengths, -1, None)
        if int(lens.sum()) != flat.shape[0]:
            raise ValueError(f"lengths: sum {int(lens.sum())} != number of frames {flat.shape[0]}")
        return _run_flat(flat, lens, norm_threshold, merge_threshold, reset)
    raise ValueError(f"states: expected a list of 2-D arrays, a flat 2-D array or a padded 3-D array, got shape {arr.shape}")


def _float32_features(arr: np.ndarray, name: str) -> np.ndarray:
    """C-contiguous float32 copy/view of floating features whose last axis is the feature dim."""
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name}: expected floating-point features, got dtype {arr.dtype}")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name}: feature dimension is 0 (shape {arr.shape})")
    if arr.dtype != np.float32:
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _as_padded(arr: np.ndarray) -> np.ndarray:
    return _float32_features(arr, "states")


def _check_many(nt: np.ndarray, mt: np.ndarray) -> None:
    for a, b in zip(nt, mt):
        _check_thresholds(a, b)


def _run_flat(flat: np.ndarray, lens: np.ndarray, norm_threshold: Any, merge_threshold: Any, reset: bool) -> list[np.ndarray]:
    n = lens.shape[0]
    nt = _per_utt(norm_threshold, n, "norm_threshold")
    mt = _per_utt(merge_threshold, n, "merge_threshold")
    _check_many(nt, mt)
    if n == 0:
        return []
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    out = np.empty((flat.shape[0], 2), np.int64)
    counts = _segment_flat(flat, offsets, nt, mt, reset, out)
    return _split(out, offsets, counts)


def _split(out: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Gather each utterance's rows into one compact array and split it into views."""
    keep = np.repeat(offsets[:-1], counts) + (np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts))
    compact = out[keep]
    return np.split(compact, np.cumsum(counts)[:-1])


def _check_segments(segments: Any, num_frames: int) -> np.ndarray:
    seg = np.asarray(segments)
    if seg.size == 0:
        return np.zeros((0, 2), np.int64)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"segments: expected an (N, 2) array of [start, end) frames, got shape {seg.shape}")
    if not np.issubdtype(seg.dtype, np.integer):
        raise TypeError(f"segments: expected integer frame indices, got dtype {seg.dtype}")
    seg = np.ascontiguousarray(seg, dtype=np.int64)
    bad = (seg[:, 0] < 0) | (seg[:, 1] > num_frames) | (seg[:, 1] <= seg[:, 0])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"segments: row {i} = {seg[i].tolist()} is empty or outside [0, {num_frames})")
    return seg


def segment_means(states: Any, segments: Any) -> np.ndarray:
    """(N, d) float32 mean feature of each ``[start, end)`` segment (float64 accumulation)."""
    x = as_states(states)
    seg = _check_segments(segments, x.shape[0])
    if seg.shape[0] == 0:
        return np.zeros((0, x.shape[1]), np.float32)
    return _means(x, seg)


def segments_to_seconds(segments: Any, frame_rate: float = 50.0) -> np.ndarray:
    """(N, 2) frame indices -> (N, 2) float64 seconds (``frame / frame_rate``)."""
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
    seg = np.asarray(segments)
    if seg.size == 0:
        return np.zeros((0, 2), np.float64)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"segments: expected an (N, 2) array, got shape {seg.shape}")
    return seg.astype(np.float64) / float(frame_rate)
