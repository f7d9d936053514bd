"""K-means codebooks over token (or frame) embeddings, and quantization of unit sets.

* :mod:`.kmeans`: chunked torch k-means (k-means++ on a sample, full or mini-batch Lloyd, cosine/euclidean);
* :mod:`.codebook`: save/load codebooks (``.pt``/``.npy`` + JSON sidecar), content hash, chunked assignment;
* :mod:`.sampling`: deterministic uniform/reservoir sampling of a unit set's embeddings;
* :mod:`.apply`: fill a unit set's ``units`` ids (in place, kill-safe, or into a new set);
* :mod:`.frame_units`: per-frame features -> deduplicated frame-unit runs.

See ``docs/quantize.md``.
"""

from __future__ import annotations

from speechunits.quantize.apply import quantize_unit_set
from speechunits.quantize.codebook import Assigner, Codebook, assign, codebook_hash, load_codebook, save_codebook
from speechunits.quantize.frame_units import FrameItem, write_frame_units
from speechunits.quantize.kmeans import KMeansResult
from speechunits.quantize.sampling import embeddings_hash, reservoir_sample, sample_embeddings

__all__ = [
    "Assigner",
    "Codebook",
    "FrameItem",
    "KMeansResult",
    "assign",
    "codebook_hash",
    "embeddings_hash",
    "load_codebook",
    "quantize_unit_set",
    "reservoir_sample",
    "sample_embeddings",
    "save_codebook",
    "write_frame_units",
]
