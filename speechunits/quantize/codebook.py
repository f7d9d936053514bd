"""K-means codebooks on disk: centroids (``.pt`` or ``.npy``) plus a JSON sidecar, and assignment.

Layout for ``CODEBOOK = km.pt`` (or ``km.npy``)::

    km.pt        torch.save({"centroids": float32 (K, D) tensor, "meta": {...}})  |  km.npy: float32 (K, D)
    km.pt.json   {"k", "dim", "metric", "seed", "inertia", "hash", "source_hash", ...}

:func:`codebook_hash` is the SHA-256 of the centroid values (float32, little-endian, C order)
and the metric, so it does not depend on the container format and is what unit sets record
in their producer. Both files are written atomically; the sidecar stores the hash, and
:func:`load_codebook` refuses a centroid file whose hash differs from it (a kill between the
two renames, or a hand-edited file).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.device import resolve_device
from speechunits.errors import CheckpointError, ConfigError
from speechunits.io_utils import atomic_path, atomic_write_json
from speechunits.quantize.kmeans import as_tensor, assign_chunked, check_metric, prepare
from speechunits.train.checkpoint import check_torch_zip, save_torch_file

PathLike = str | os.PathLike[str]
SUFFIXES = (".pt", ".npy")
FORMAT = "speechunits.codebook/1"


@dataclass
class Codebook:
    """Centroids ``(K, D)`` float32 with their metric and metadata (the sidecar contents)."""

    centroids: np.ndarray
    metric: str
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def hash(self) -> str:
        return centroid_hash(self.centroids, self.metric)


def sidecar_path(path: PathLike) -> Path:
    """``km.pt`` -> ``km.pt.json`` (so ``km.pt`` and ``km.npy`` can live side by side)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _check_suffix(path: Path) -> None:
    if path.suffix not in SUFFIXES:
        raise ConfigError(path, f"codebook file must end in one of {list(SUFFIXES)}, found {path.suffix or 'no suffix'!r}")


def centroid_hash(centroids: np.ndarray, metric: str) -> str:
    """SHA-256 over the metric name and the float32 little-endian C-order centroid bytes."""
    arr = np.ascontiguousarray(centroids, dtype="<f4")
    h = hashlib.sha256()
    h.update(f"{metric}:{arr.shape[0]}x{arr.shape[1]}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def save_codebook(
    path: PathLike,
    centroids: np.ndarray | torch.Tensor,
    *,
    metric: str,
    seed: int | None = None,
    inertia: float | None = None,
    source_hash: str | None = None,
    extra: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> Codebook:
    """Write the centroid file and its JSON sidecar atomically; returns the saved Codebook.

    ``extra`` goes into both files' metadata; ``run_info`` (wall-clock timings) into the sidecar
    only, so that the centroid file of the same centroids and settings is the same bytes every time."""
    path = Path(path)
    _check_suffix(path)
    check_metric(metric)
    arr = centroids.detach().float().cpu().numpy() if isinstance(centroids, torch.Tensor) else np.asarray(centroids)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ConfigError(path, f"centroids must be a non-empty 2-D (K, D) array, found shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ConfigError(path, "centroids contain NaN or inf")
    meta: dict[str, Any] = {
        "format": FORMAT, "k": int(arr.shape[0]), "dim": int(arr.shape[1]), "metric": metric,
        "seed": seed, "inertia": None if inertia is None else float(inertia), "source_hash": source_hash,
        "hash": centroid_hash(arr, metric), "file": path.name,
    }
    meta.update(extra or {})
    if path.suffix == ".pt":
        save_torch_file(path, {"centroids": torch.from_numpy(arr), "meta": meta})  # equal codebooks, equal bytes
    else:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
    atomic_write_json(sidecar_path(path), {**meta, **(run_info or {})})
    return Codebook(arr, metric, {**meta, **(run_info or {})}, path)


def _read_centroids(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".pt":
            check_torch_zip(path, "codebook")  # a flipped byte in the centroids must not load
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or "centroids" not in obj:
                raise CheckpointError(path, "expected a dict with key 'centroids' (a speechunits codebook)")
            cent = obj["centroids"]
            if not isinstance(cent, torch.Tensor):
                raise CheckpointError(path, f"'centroids' must be a tensor, found {type(cent).__name__}")
            return cent.detach().float().numpy()
        return np.load(path, allow_pickle=False)
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise CheckpointError(path, f"unreadable or truncated codebook ({type(err).__name__}: {err})") from None


def load_codebook(path: PathLike) -> Codebook:
    """Read a codebook and its sidecar; checks shape, metric and hash against the sidecar."""
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise CheckpointError(path, "codebook file not found")
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(side, f"missing codebook metadata (written beside {path.name} by `speechunits cluster`)")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(side, f"unreadable codebook metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(side, f"expected codebook metadata with format {FORMAT!r}, "
                                    f"found {meta.get('format') if isinstance(meta, dict) else meta!r}")
    arr = _read_centroids(path)
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise CheckpointError(path, f"centroids must be a 2-D float array, found {arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    metric = meta.get("metric")
    try:
        check_metric(metric)
    except ConfigError:
        raise CheckpointError(side, f"unknown metric {metric!r}") from None
    if (meta.get("k"), meta.get("dim")) != arr.shape:
        raise CheckpointError(path, f"centroids have shape {arr.shape}, metadata says k={meta.get('k')} dim={meta.get('dim')}")
    digest = centroid_hash(arr, metric)
    if meta.get("hash") != digest:
        raise CheckpointError(path, f"centroid hash {digest[:12]}… does not match {side.name} "
                                    f"({str(meta.get('hash'))[:12]}…): file and metadata are from different runs")
    return Codebook(arr, metric, meta, path)


def codebook_hash(path: PathLike) -> str:
    """The content hash of a saved codebook (verified against its sidecar)."""
    return load_codebook(path).hash


class Assigner:
    """Nearest-centroid lookup with the centroids prepared once on ``device`` (for many small calls)."""

    def __init__(self, codebook: Codebook | np.ndarray | torch.Tensor, metric: str | None = None, *,
                 chunk_rows: int | None = None, device: str | torch.device = "cpu") -> None:
        if isinstance(codebook, Codebook):
            if metric is not None and metric != codebook.metric:
                raise ConfigError(codebook.path, f"codebook was trained with metric {codebook.metric!r}, "
                                                 f"asked for {metric!r}")
            cent, metric = codebook.centroids, codebook.metric
        else:
            if metric is None:
                raise ConfigError(None, "a metric is required with a raw centroid array")
            cent = codebook
        self.metric = check_metric(metric)
        self.device = resolve_device(device)
        self.centroids = prepare(as_tensor(cent).to(self.device), self.metric)
        self.chunk_rows = chunk_rows

    def __call__(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """int64 ids ``(N,)`` of the rows of ``features`` ``(N, D)``."""
        x = as_tensor(features)
        dim = self.centroids.shape[1]
        if x.ndim != 2 or x.shape[1] != dim:
            raise ConfigError(None, f"features must be (N, {dim}) to match the codebook, found {tuple(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        labels, _ = assign_chunked(x.to(self.device), self.centroids, self.metric, self.chunk_rows,
                                   centroids_prepared=True)
        return labels.cpu().numpy()


def assign(
    features: np.ndarray | torch.Tensor,
    codebook: Codebook | np.ndarray | torch.Tensor,
    metric: str | None = None,
    *,
    chunk_rows: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Nearest-centroid ids (int64, ``(N,)``) of the rows of ``features``, computed in row chunks.

    ``metric`` defaults to the codebook's own; passing a different one for a :class:`Codebook`
    is an error. For a raw centroid array ``metric`` is required. For many calls with one
    codebook, build an :class:`Assigner` once.
    """
    return Assigner(codebook, metric, chunk_rows=chunk_rows, device=device)(features)
