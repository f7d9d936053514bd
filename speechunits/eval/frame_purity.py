"""Phone purity, cluster purity and phone-normalised mutual information (PNMI) of frame clusters.

The definitions of HuBERT (Hsu et al. 2021, section IV-B) over labelled frames: with ``y`` the
reference phone of a frame and ``z`` its cluster, the joint distribution ``p(y, z)`` is the
share of frames with phone ``y`` in cluster ``z``, and

* **phone purity** ``= E_z[max_y p(y | z)] = sum_z max_y p(y, z)``: how well a cluster
  predicts a phone (each cluster labelled by its majority phone);
* **cluster purity** ``= E_y[max_z p(z | y)] = sum_y max_z p(y, z)``: how concentrated each
  phone is in one cluster;
* **PNMI** ``= I(y; z) / H(y)``: the share of the phone's uncertainty that the cluster
  removes (1 when the cluster determines the phone, 0 when they are independent).

All three lie in ``[0, 1]``. Phone purity grows with the number of clusters (every frame its
own cluster gives 1); cluster purity shrinks with it; PNMI is the summary HuBERT compares
systems by. PNMI is undefined (NaN) when only one phone occurs (``H(y) = 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FramePurity:
    """The three scores (fractions in [0, 1]) and what they were computed over."""

    phone_purity: float
    cluster_purity: float
    pnmi: float
    frames: int
    phones: int  # distinct phone labels among the frames
    clusters: int  # distinct clusters among the frames

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a NaN PNMI becomes None)."""
        out = asdict(self)
        if not np.isfinite(out["pnmi"]):
            out["pnmi"] = None
        return out


def contingency(phones: Sequence[Any] | np.ndarray, clusters: Sequence[int] | np.ndarray) -> np.ndarray:
    """Counts ``C[phone, cluster]`` (int64) over frames; rows and columns are the distinct values, sorted."""
    y = np.asarray(phones)
    z = np.asarray(clusters)
    if y.shape != z.shape or y.ndim != 1:
        raise ValueError(f"phones and clusters must be 1-d and of equal length, got {y.shape} and {z.shape}")
    _, yi = np.unique(y, return_inverse=True)
    _, zi = np.unique(z, return_inverse=True)
    counts = np.zeros((int(yi.max(initial=-1)) + 1, int(zi.max(initial=-1)) + 1), dtype=np.int64)
    np.add.at(counts, (yi, zi), 1)
    return counts


def purity_from_counts(counts: np.ndarray) -> FramePurity:
    """The scores of a ``(phones, clusters)`` count matrix (empty rows/columns are ignored)."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2 or (c < 0).any():
        raise ValueError(f"counts must be a non-negative 2-d matrix, got shape {c.shape}")
    total = c.sum()
    if total <= 0:
        raise ValueError("no frames: the count matrix is empty")
    p = c / total
    py = p.sum(axis=1)
    pz = p.sum(axis=0)
    phone_purity = float(c.max(axis=0).sum() / total)
    cluster_purity = float(c.max(axis=1).sum() / total)
    nz = p > 0
    mutual = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    h_phone = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    pnmi = max(0.0, mutual) / h_phone if h_phone > 0 else float("nan")
    return FramePurity(phone_purity=phone_purity, cluster_purity=cluster_purity, pnmi=min(pnmi, 1.0),
                       frames=int(total), phones=int((py > 0).sum()), clusters=int((pz > 0).sum()))


def frame_purity(phones: Sequence[Any] | np.ndarray, clusters: Sequence[int] | np.ndarray) -> FramePurity:
    """Phone purity, cluster purity and PNMI of per-frame phone labels against per-frame cluster ids."""
    return purity_from_counts(contingency(phones, clusters))


__all__ = ["FramePurity", "contingency", "frame_purity", "purity_from_counts"]
