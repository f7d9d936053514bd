"""The unit-token format (spec: ``docs/unit-format.md``).

A unit set is a directory with ``meta.json``, ``units.jsonl`` (one utterance per line, sorted
by id) and optional ``embeddings/`` (float16 ``.npy`` shards + ``index.json``).
"""

from __future__ import annotations

from speechunits.units.convert import (
    frames_to_runs,
    num_frames,
    reconcile_frames_and_audio,
    reconcile_length,
    runs_to_frames,
    segments_to_frame_grid,
)
from speechunits.units.embeddings import EmbeddingStore, iter_embeddings, read_embeddings
from speechunits.units.export import export_fairseq, export_kaldi, export_resynth, export_textless, export_units
from speechunits.units.importers import import_fairseq_units
from speechunits.units.meta import FORMAT, UnitSetMeta, read_meta, write_meta
from speechunits.units.reader import read_unit_file, read_units
from speechunits.units.record import UnitRecord
from speechunits.units.validate import ValidationReport, validate_unit_set
from speechunits.units.writer import UnitSetWriter, merge_shards, write_unit_set

__all__ = [
    "FORMAT",
    "EmbeddingStore",
    "UnitRecord",
    "UnitSetMeta",
    "UnitSetWriter",
    "ValidationReport",
    "export_fairseq",
    "export_kaldi",
    "export_resynth",
    "export_textless",
    "export_units",
    "frames_to_runs",
    "import_fairseq_units",
    "iter_embeddings",
    "merge_shards",
    "num_frames",
    "read_embeddings",
    "read_meta",
    "read_unit_file",
    "read_units",
    "reconcile_frames_and_audio",
    "reconcile_length",
    "runs_to_frames",
    "segments_to_frame_grid",
    "validate_unit_set",
    "write_meta",
    "write_unit_set",
]
