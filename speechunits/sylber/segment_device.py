"""Greedy Sylber segmentation and segment means on the device, as Triton kernels.

Same algorithm and decisions as :mod:`speechunits.sylber.segment` (read its docstring first),
for a padded batch of frame features that already lives on the GPU, so that only segments
and bf16/fp16 segment means have to leave the device.

**Mapping to the GPU.** One Triton program per utterance walks its frames in order (the
algorithm is sequential over time: every decision depends on the running mean so far), with
vector operations across the feature dimension ``D`` (one ``BLOCK_D``-wide register vector,
``BLOCK_D`` = next power of two >= D, masked). Per frame it does three independent
reductions (``|x|^2``, ``S.x`` and ``|S + x|^2``, the last one speculative so that a merge
needs no further reduction) and loads the next frame before working on this one. It keeps in
registers:

* ``S``, the running sum of the open segment weighted as the CPU weights it (``S = cnt *
  mean``, so the reference quirk is kept: after a mid-speech split ``S = cnt * x`` with the
  count not reset unless ``reset_count``), and ``|S|^2``; the cosine uses ``S / cnt`` and
  ``|S|^2 / cnt^2`` exactly as the CPU uses the mean (the ``1e-8`` in the norms is not
  scale-invariant);
* ``R``, the open segment's raw frame sum, and ``P``, the raw sum of the *pending* segment:
  the last closed one, whose right boundary may still merge or move.

When a segment closes (a non-speech frame, a split, or the end of the utterance) and it began
at a mid-speech split, the boundary between the pending segment and it is settled at once,
as the numba kernel does: merged when ``cos(mean P, mean R) >= merge_threshold``, otherwise
moved inside the window (half of each neighbour) to the argmax of the running prefix sum of
``cos(frame, left mean) - cos(frame, right mean)`` (``f(j) = prefix_sp(j) + suffix_sn(j)``
minus the constant ``sum sn``; a strict ``>`` keeps the first maximum). The new right
segment's sum is the old one plus or minus the frames that moved, so no segment is summed
twice. Otherwise the pending segment is final and is written out. Segments go straight into
the ``(B, T, 2)`` int32 output, and the count into ``counts``: nothing is synchronised with
the host.

**What is exact and what is not.** Boundaries are integers and the control flow is the CPU's,
but the arithmetic is not bit-identical: ``tl.sum`` reduces in its own tree order, the running
sums are plain sums instead of the CPU's running mean, the argmax compares prefix differences
instead of prefix + suffix sums, and a moved boundary adjusts the sum instead of re-summing.
Decisions can therefore differ only where a cosine sits within rounding error of a threshold
or two window positions tie to rounding error.

Accumulation is float64 by default, chosen by measured agreement with ``greedy_segment`` under
the interpreter (IEEE arithmetic, as float64 is on a GPU too): float64 gave identical segments
on all 15 fixtures at full size, on 1,200 random utterances (exact repeats, silence, glides,
noise; d = 1-16, five threshold pairs, both count variants: 1,200/1,200) and on three noisy
copies of the d = 768 fixture at four threshold pairs (12 runs), with float32 or bf16 input. float32
also matched the fixtures and the d = 768 runs but not every random utterance (1,198/1,200;
the misses at d = 1, merge_threshold = -0.3). ``accumulate=torch.float32`` is offered for GPUs
with slow float64; on a GPU its divisions and square roots are Triton's fast approximations
(``div.full.f32``, ``sqrt.approx``), so it can agree less there than under the interpreter.
:func:`decision_agreement` repeats the measurement on any device.

**Inputs the kernel cannot check without a host sync.** ``frame_lengths`` outside ``[0, T]``
are clamped on the GPU (checked, with an error, for CPU tensors under the interpreter); a
non-finite frame is non-speech (the CPU version raises instead).

**Verification status.** Verified only under the Triton interpreter (``TRITON_INTERPRET=1``,
CPU tensors) and by compiling the kernels to sm_90 cubins without running them (no spills:
84 registers per thread at D = 64, 197 at D = 768 with 4 warps), until it is run on a GPU,
e.g. ``decision_agreement(utterances, nt, mt, device="cuda")``. No GPU timing exists yet.

Public API: :func:`device_segmentation_available`, :func:`greedy_segment_device`,
:func:`segment_means_device`, :func:`decision_agreement`. Kernels are built on first use, in
the mode (compiled or interpreted) that ``TRITON_INTERPRET`` selects at that moment.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speechunits.sylber.segment import NORM_EPS, _check_thresholds, greedy_segment

try:  # Triton ships with CUDA builds of torch; a CPU-only install may lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None

__all__ = [
    "device_segmentation_available",
    "greedy_segment_device",
    "segment_means_device",
    "decision_agreement",
]

_FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_ACC_DTYPES = (torch.float64, torch.float32)
_MEANS_BLOCK_D = 256
"""Feature columns per program of the means kernel (grid: segments x column blocks)."""


# --------------------------------------------------------------------------------------------
# kernels (plain functions here, turned into Triton kernels on first use by _kernels())
# --------------------------------------------------------------------------------------------


if triton is not None:  # annotations need triton.language at definition time

    def _greedy_kernel(
        x_ptr, len_ptr, out_ptr, count_ptr, T, D, stride_b, stride_t,
        nt: tl.float64, mt: tl.float64,
        RESET: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr,
    ):  # pragma: no cover - runs as a Triton kernel (interpreted in the tests)
        """One utterance per program: sweep, merge/refine and write segments (see module doc)."""
        b = tl.program_id(0)
        L = tl.load(len_ptr + b).to(tl.int32)
        L = tl.minimum(tl.maximum(L, 0), T)
        offs = tl.arange(0, BLOCK_D)
        dmask = offs < D
        xb = x_ptr + b.to(tl.int64) * stride_b
        ob_ptr = out_ptr + b.to(tl.int64) * T * 2
        EPS: tl.constexpr = 1e-8

        S = tl.zeros([BLOCK_D], ACC)      # weighted running sum of the open segment (cnt * mean)
        s2 = tl.zeros([], ACC)            # |S|^2
        R = tl.zeros([BLOCK_D], ACC)      # raw frame sum of the open segment
        P = tl.zeros([BLOCK_D], ACC)      # raw frame sum of the pending segment [ps, pe)
        cnt = tl.zeros([], tl.int32)      # running count (0: no open segment)
        s = tl.zeros([], tl.int32) - 1    # start of the open segment
        split_open = tl.zeros([], tl.int32)  # 1: the open segment began at a mid-speech split
        ps = tl.zeros([], tl.int32) - 1   # pending segment (-1: none)
        pe = tl.zeros([], tl.int32) - 1
        nseg = tl.zeros([], tl.int32)
        xn = tl.load(xb + offs, mask=dmask & (L > 0), other=0.0).to(ACC)

        for i in range(0, L + 1):  # i == L is a virtual non-speech frame that closes the last segment
            xi = xn
            xn = tl.load(xb + (i + 1) * stride_t + offs, mask=dmask & (i + 1 < L), other=0.0).to(ACC)
            n2 = tl.sum(xi * xi, axis=0)
            sx = tl.sum(S * xi, axis=0)
            Sj = S + xi
            s2j = tl.sum(Sj * Sj, axis=0)
            nx = tl.sqrt(n2 + EPS)
            speech = (nx >= nt) & (i < L)
            is_open = cnt > 0
            fc = tl.maximum(cnt, 1).to(ACC)
            sim = (sx / fc) / tl.sqrt(s2 / (fc * fc) + EPS) / nx
            joins = speech & is_open & (sim >= mt)
            splits = speech & is_open & (~(sim >= mt))
            closes = is_open & (~joins)

            if closes:  # segment [s, i) with raw sum R
                ln = i - s
                if split_open != 0:  # settle the boundary s between the pending segment and it
                    lp = s - ps
                    a = P / lp.to(ACC)
                    bv = R / ln.to(ACC)
                    na = tl.sqrt(tl.sum(a * a, axis=0) + EPS)
                    nb = tl.sqrt(tl.sum(bv * bv, axis=0) + EPS)
                    cab = tl.sum(a * bv, axis=0) / na / nb
                    if cab >= mt:
                        P = P + R
                    else:
                        lo = tl.maximum(ps, s - tl.maximum(lp // 2, 1))
                        hi = tl.minimum(i, s + tl.maximum(ln // 2, 1))
                        run = tl.zeros([], ACC)
                        best = tl.zeros([], ACC)
                        nb_ = lo
                        for t in range(lo, hi - 1):  # boundary t+1 gets prefix sum over frames lo..t
                            xt = tl.load(xb + t * stride_t + offs, mask=dmask, other=0.0).to(ACC)
                            nf = tl.sqrt(tl.sum(xt * xt, axis=0) + EPS)
                            sp = tl.sum(xt * a, axis=0) / nf / na
                            sn = tl.sum(xt * bv, axis=0) / nf / nb
                            run = run + (sp - sn)
                            better = run > best
                            best = tl.where(better, run, best)
                            nb_ = tl.where(better, t + 1, nb_)
                        m0 = tl.minimum(nb_, s)
                        m1 = tl.maximum(nb_, s)
                        moved = tl.zeros([BLOCK_D], ACC)
                        for t in range(m0, m1):
                            moved += tl.load(xb + t * stride_t + offs, mask=dmask, other=0.0).to(ACC)
                        keep = nb_ > ps  # the left segment is empty only for merge_threshold >= 1
                        tl.store(ob_ptr + nseg * 2, ps, mask=keep)
                        tl.store(ob_ptr + nseg * 2 + 1, nb_, mask=keep)
                        nseg = nseg + keep.to(tl.int32)
                        P = tl.where(nb_ < s, R + moved, R - moved)
                        ps = nb_
                    pe = tl.zeros([], tl.int32) + i
                else:  # the pending segment is final
                    has = ps >= 0
                    tl.store(ob_ptr + nseg * 2, ps, mask=has)
                    tl.store(ob_ptr + nseg * 2 + 1, pe, mask=has)
                    nseg = nseg + has.to(tl.int32)
                    ps = s
                    pe = tl.zeros([], tl.int32) + i
                    P = R

            starting = speech & (~joins)
            w = tl.where(splits, cnt + 1, 1)
            if RESET:
                w = tl.zeros([], tl.int32) + 1
            wf = w.to(ACC)
            S = tl.where(joins, Sj, tl.where(starting, xi * wf, 0.0))
            s2 = tl.where(joins, s2j, tl.where(starting, n2 * wf * wf, 0.0))
            R = tl.where(joins, R + xi, tl.where(starting, xi, 0.0))
            cnt = tl.where(joins, cnt + 1, tl.where(starting, w, 0))
            s = tl.where(starting, i, tl.where(speech, s, -1))
            split_open = tl.where(speech, tl.where(joins, split_open, splits.to(tl.int32)), 0)

        has = ps >= 0
        tl.store(ob_ptr + nseg * 2, ps, mask=has)
        tl.store(ob_ptr + nseg * 2 + 1, pe, mask=has)
        nseg = nseg + has.to(tl.int32)
        tl.store(count_ptr + b, nseg)


    def _means_kernel(
        x_ptr, utt_ptr, start_ptr, end_ptr, out_ptr, D, stride_b, stride_t,
        BLOCK_D: tl.constexpr, ACC: tl.constexpr,
    ):  # pragma: no cover - runs as a Triton kernel (interpreted in the tests)
        """Program (r, c): mean of segment row r over feature columns block c, in time order."""
        r = tl.program_id(0)
        c = tl.program_id(1)
        offs = c * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = offs < D
        u = tl.load(utt_ptr + r)
        s = tl.load(start_ptr + r).to(tl.int32)
        e = tl.load(end_ptr + r).to(tl.int32)
        xb = x_ptr + u.to(tl.int64) * stride_b
        acc = tl.zeros([BLOCK_D], ACC)
        for t in range(s, e):
            acc += tl.load(xb + t * stride_t + offs, mask=dmask, other=0.0).to(ACC)
        mean = (acc / (e - s).to(ACC)).to(tl.float32)  # through float32, as segment_means rounds
        tl.store(out_ptr + r.to(tl.int64) * D + offs, mean.to(out_ptr.dtype.element_ty), mask=dmask)


_KERNELS: dict[bool, tuple[Any, Any]] = {}


def _interpreting() -> bool:
    """True when Triton would build interpreted kernels now (same parsing as Triton's knob)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on", "y")


def _kernels() -> tuple[Any, Any]:
    """(greedy, means) kernels for the current mode, built once per mode and cached."""
    mode = _interpreting()
    if mode not in _KERNELS:
        if triton is None:
            raise RuntimeError("greedy_segment_device: Triton is not installed (it ships with CUDA builds of torch)")
        _KERNELS[mode] = (triton.jit(_greedy_kernel), triton.jit(_means_kernel))
    return _KERNELS[mode]


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def device_segmentation_available(device: torch.device | str) -> bool:
    """True when :func:`greedy_segment_device` can run on tensors of ``device``.

    That is CUDA (compute capability 8.0 or newer, or ROCm) with Triton importable, or any
    device while the Triton interpreter is on (``TRITON_INTERPRET=1``, for CPU tests).
    """
    if triton is None:
        return False
    if _interpreting():
        return True
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index) >= (8, 0)


def _check_runnable(t: torch.Tensor, name: str) -> None:
    if not device_segmentation_available(t.device):
        raise RuntimeError(
            f"{name}: device segmentation needs CUDA with Triton (or TRITON_INTERPRET=1 for CPU tensors); "
            f"got a tensor on {t.device}. Use speechunits.sylber.segment.greedy_segment_batch on the host instead."
        )


def _check_feats(feats: Any, name: str = "feats") -> torch.Tensor:
    if not isinstance(feats, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (B, T, D), got {type(feats).__name__}")
    if feats.ndim != 3:
        raise ValueError(f"{name}: expected a padded (B, T, D) tensor, got shape {tuple(feats.shape)}")
    if feats.dtype not in _FEATURE_DTYPES:
        raise TypeError(f"{name}: expected float32/bfloat16/float16/float64 features, got {feats.dtype}")
    if feats.shape[2] == 0:
        raise ValueError(f"{name}: feature dimension is 0 (shape {tuple(feats.shape)})")
    if feats.shape[2] > 65536:
        raise ValueError(f"{name}: feature dimension {feats.shape[2]} is above the kernel's limit of 65536")
    if feats.numel() and feats.stride(2) != 1:
        feats = feats.contiguous()
    if feats.shape[1] * max(feats.stride(1), 1) >= 2**31:
        raise ValueError(f"{name}: one utterance has {feats.shape[1]} x {feats.stride(1)} elements, over 2^31")
    return feats


def _check_acc(accumulate: torch.dtype) -> Any:
    if accumulate not in _ACC_DTYPES:
        raise ValueError(f"accumulate: expected torch.float64 or torch.float32, got {accumulate!r}")
    return tl.float64 if accumulate == torch.float64 else tl.float32


def greedy_segment_device(
    feats: torch.Tensor,
    frame_lengths: torch.Tensor,
    norm_threshold: float,
    merge_threshold: float,
    *,
    reset_count: bool = False,
    accumulate: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment a padded batch on its device: ``(segments (B, T, 2) int32, counts (B,) int32)``.

    Row ``b``'s first ``counts[b]`` rows are its ``[start, end)`` segments, the decisions of
    :func:`speechunits.sylber.segment.greedy_segment` on ``feats[b, :frame_lengths[b]]``
    (padding is never read); the other rows are 0. Launches one kernel and does not
    synchronise with the host. ``accumulate`` is the arithmetic precision (see module doc).
    """
    nt, mt = _check_thresholds(norm_threshold, merge_threshold)
    feats = _check_feats(feats)
    if not isinstance(frame_lengths, torch.Tensor):
        raise TypeError(f"frame_lengths: expected a torch.Tensor (B,), got {type(frame_lengths).__name__}")
    B, T, D = feats.shape
    if frame_lengths.shape != (B,):
        raise ValueError(f"frame_lengths: expected shape ({B},) for feats of shape {tuple(feats.shape)}, "
                         f"got {tuple(frame_lengths.shape)}")
    if frame_lengths.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"frame_lengths: expected int32/int64, got {frame_lengths.dtype}")
    if frame_lengths.device != feats.device:
        raise ValueError(f"frame_lengths: on {frame_lengths.device}, feats on {feats.device}")
    acc = _check_acc(accumulate)
    _check_runnable(feats, "greedy_segment_device")
    if feats.device.type == "cpu" and B:  # free on the host; on a GPU the kernel clamps instead
        lo, hi = int(frame_lengths.min()), int(frame_lengths.max())
        if lo < 0 or hi > T:
            raise ValueError(f"frame_lengths: values must lie in [0, {T}], got min {lo} max {hi}")
    segments = torch.zeros((B, T, 2), dtype=torch.int32, device=feats.device)
    counts = torch.zeros((B,), dtype=torch.int32, device=feats.device)
    if B == 0 or T == 0:
        return segments, counts
    block_d = triton.next_power_of_2(D)
    greedy, _ = _kernels()
    greedy[(B,)](
        feats, frame_lengths, segments, counts, T, D, feats.stride(0), feats.stride(1), nt, mt,
        RESET=bool(reset_count), BLOCK_D=block_d, ACC=acc, num_warps=max(1, min(8, block_d // 256)),
    )
    return segments, counts


def segment_means_device(
    feats: torch.Tensor,
    segments: torch.Tensor,
    counts: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float16,
    accumulate: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(sum counts, D) mean feature of each segment, rows in (utterance, segment) order.

    ``segments``/``counts`` as returned by :func:`greedy_segment_device`. Each mean is summed
    in time order in ``accumulate`` precision (deterministic: no atomics), rounded to float32
    as :func:`speechunits.sylber.segment.segment_means` does, then to ``dtype``. One host sync
    is unavoidable (the output's row count) and also validates the segments.
    """
    feats = _check_feats(feats)
    B, T, D = feats.shape
    if not isinstance(segments, torch.Tensor) or not isinstance(counts, torch.Tensor):
        raise TypeError("segments, counts: expected torch.Tensors from greedy_segment_device")
    if segments.shape != (B, T, 2):
        raise ValueError(f"segments: expected shape ({B}, {T}, 2) for feats {tuple(feats.shape)}, "
                         f"got {tuple(segments.shape)}")
    if counts.shape != (B,):
        raise ValueError(f"counts: expected shape ({B},), got {tuple(counts.shape)}")
    if segments.dtype not in (torch.int32, torch.int64) or counts.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"segments, counts: expected integer tensors, got {segments.dtype}, {counts.dtype}")
    if segments.device != feats.device or counts.device != feats.device:
        raise ValueError(f"segments, counts: must be on {feats.device} with feats")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    acc = _check_acc(accumulate)
    _check_runnable(feats, "segment_means_device")
    if B == 0 or T == 0:
        return torch.zeros((0, D), dtype=dtype, device=feats.device)
    counts64 = counts.to(torch.int64)
    valid = torch.arange(T, device=feats.device)[None, :] < counts64[:, None]
    st, en = segments[..., 0].to(torch.int64), segments[..., 1].to(torch.int64)
    bad = valid & ((st < 0) | (en > T) | (en <= st))
    n, n_bad, n_range = torch.stack([counts64.sum(), bad.sum(), ((counts64 < 0) | (counts64 > T)).sum()]).tolist()
    if n_range:
        raise ValueError(f"counts: values must lie in [0, {T}]")
    if n_bad:
        raise ValueError(f"segments: {n_bad} of the counted rows are empty or outside [0, {T}]")
    out = torch.empty((n, D), dtype=dtype, device=feats.device)
    if n == 0:
        return out
    utt = torch.repeat_interleave(torch.arange(B, device=feats.device), counts64, output_size=n)
    first = torch.cumsum(counts64, 0) - counts64
    k = torch.arange(n, device=feats.device) - first[utt]
    starts = st[utt, k].contiguous()
    ends = en[utt, k].contiguous()
    _, means = _kernels()
    grid = (n, triton.cdiv(D, _MEANS_BLOCK_D))
    means[grid](feats, utt, starts, ends, out, D, feats.stride(0), feats.stride(1),
                BLOCK_D=_MEANS_BLOCK_D, ACC=acc, num_warps=2)
    return out


# --------------------------------------------------------------------------------------------
# agreement measurement (host side; used by the tests and by benchmarks on a GPU)
# --------------------------------------------------------------------------------------------


def decision_agreement(
    utterances: Sequence[np.ndarray],
    norm_threshold: float,
    merge_threshold: float,
    *,
    device: torch.device | str = "cuda",
    reset_count: bool = False,
    accumulate: torch.dtype = torch.float64,
    feature_dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    """Compare :func:`greedy_segment_device` with the CPU ``greedy_segment`` on ``utterances``.

    Pads the (T_i, D) float32 arrays into one batch on ``device`` (in ``feature_dtype``; the
    CPU gets the same rounded values) and returns ``{"utterances", "identical_fraction",
    "boundary_f1"}`` where boundary F1 matches segment edges exactly (tolerance 0 frames).
    """
    utts = [np.asarray(u, np.float32) for u in utterances]
    if not utts:
        return {"utterances": 0, "identical_fraction": 1.0, "boundary_f1": 1.0}
    D = utts[0].shape[1]
    T = max(u.shape[0] for u in utts)
    padded = torch.zeros((len(utts), T, D), dtype=torch.float32)
    for i, u in enumerate(utts):
        padded[i, : u.shape[0]] = torch.from_numpy(u)
    padded = padded.to(feature_dtype)
    lens = torch.tensor([u.shape[0] for u in utts], dtype=torch.int64)
    seg, cnt = greedy_segment_device(padded.to(device), lens.to(device), norm_threshold, merge_threshold,
                                     reset_count=reset_count, accumulate=accumulate)
    seg, cnt = seg.cpu().numpy(), cnt.cpu().numpy()
    same = 0
    hits = n_dev = n_cpu = 0
    for i, u in enumerate(utts):
        ref = greedy_segment(padded[i, : u.shape[0]].float().numpy(), norm_threshold, merge_threshold,
                             reset_count=reset_count)
        got = seg[i, : cnt[i]].astype(np.int64)
        same += int(got.shape == ref.shape and np.array_equal(got, ref))
        e_ref, e_got = set(ref.ravel().tolist()), set(got.ravel().tolist())
        hits += len(e_ref & e_got)
        n_dev += len(e_got)
        n_cpu += len(e_ref)
    f1 = 1.0 if n_dev + n_cpu == 0 else 2.0 * hits / (n_dev + n_cpu)
    return {"utterances": len(utts), "identical_fraction": same / len(utts), "boundary_f1": f1}
