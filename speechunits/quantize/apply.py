"""Fill the ``units`` ids of a unit set from its token embeddings and a k-means codebook.

* Out of place (``out_dir`` given and different): a new unit set is written with
  :class:`speechunits.units.UnitSetWriter` (embeddings copied, ``audio_root`` re-pointed at
  the source's audio so relative paths still resolve).
* In place: the new ``units.jsonl`` and ``meta.json`` are written to hidden temporary files
  in the unit directory and renamed over the old ones only after every utterance is done
  (``units.jsonl`` first, then ``meta.json``). An exception or a kill during the long part
  leaves the old unit set untouched (an exception also removes the temporaries; a SIGKILL
  may leave a hidden ``.units.jsonl.*.tmp.jsonl``, which readers ignore and the next run
  removes). Embeddings are never touched in place.

The new ``meta.json`` records ``vocab_size = k + 1`` and ``producer["codebook"]`` = the
codebook's hash, metric, k, path and source-embeddings hash. Ids ``0..k-1`` are the cluster
ids and id ``k`` is the ``silence`` special id, which the format uses to fill the gaps between
tokens when they are laid out on the frame grid (syllable sets have gaps: pauses between
syllables). It is defined for every quantized set, gaps or not, so that all sets quantized
with one codebook share one vocabulary. The other special ids are null. The result is
validated before it is returned.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechunits.errors import ConfigError, UnitFormatError
from speechunits.io_utils import atomic_path
from speechunits.quantize.codebook import Assigner, Codebook, load_codebook
from speechunits.quantize.sampling import open_store
from speechunits.units import UnitSetMeta, UnitSetWriter, ValidationReport, read_meta, read_units, validate_unit_set
from speechunits.units.meta import META_NAME, UNITS_NAME, default_special_ids, write_meta
from speechunits.units.record import check_record, dump_line

PathLike = str | os.PathLike[str]


def codebook_producer(book: Codebook) -> dict[str, Any]:
    """What a unit set records about the codebook that made its ids."""
    return {"hash": book.hash, "metric": book.metric, "k": book.k, "dim": book.dim,
            "path": None if book.path is None else str(book.path), "source_hash": book.meta.get("source_hash")}


def codebook_vocabulary(book: Codebook) -> dict[str, Any]:
    """``vocab_size`` and ``special_ids`` of every unit set quantized with ``book``: ids ``0..k-1`` are
    its clusters and ``k`` the silence id (gaps, padding), so all such sets share one vocabulary."""
    return {"vocab_size": book.k + 1, "special_ids": {**default_special_ids(), "silence": book.k}}


def quantized_meta(meta: UnitSetMeta, book: Codebook) -> UnitSetMeta:
    """A copy of ``meta`` with ``vocab_size = k + 1``, ``silence = k`` and the codebook in the producer."""
    new = copy.deepcopy(meta)
    vocabulary = codebook_vocabulary(book)
    new.vocab_size = vocabulary["vocab_size"]
    new.special_ids = vocabulary["special_ids"]
    new.producer = {**meta.producer, "codebook": codebook_producer(book)}
    return new


def _check_compatible(unit_dir: Path, meta: UnitSetMeta, book: Codebook) -> None:
    if meta.embedding_dim is None:
        raise UnitFormatError(unit_dir / META_NAME, "unit set has no embeddings (embedding_dim is null); "
                                                    "nothing to quantize")
    if meta.embedding_dim != book.dim:
        raise ConfigError(book.path, f"codebook dim {book.dim} != unit set embedding_dim {meta.embedding_dim} "
                                     f"({unit_dir / META_NAME})")


def quantize_unit_set(
    unit_dir: PathLike,
    codebook: PathLike | Codebook,
    out_dir: PathLike | None = None,
    *,
    device: str = "cpu",
    chunk_rows: int | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Assign every token embedding of ``unit_dir`` to its nearest centroid; returns the validation report."""
    src = Path(unit_dir)
    book = codebook if isinstance(codebook, Codebook) else load_codebook(codebook)
    meta = read_meta(src)
    _check_compatible(src, meta, book)
    nearest = Assigner(book, chunk_rows=chunk_rows, device=device)
    store = open_store(src)
    new_meta = quantized_meta(meta, book)
    total = meta.num_utterances
    in_place = out_dir is None or Path(out_dir).resolve() == src.resolve()

    def quantized() -> Any:
        bar = tqdm(read_units(src), total=total, desc="quantize", unit="utt", disable=not progress, leave=False)
        for rec in bar:
            rows = store.get(rec.id)
            rec.units = nearest(rows).tolist()
            yield rec, rows

    if in_place:
        with atomic_path(src / META_NAME) as tmp_meta:
            with atomic_path(src / UNITS_NAME) as tmp_units:
                with open(tmp_units, "w", encoding="utf-8", newline="\n") as f:
                    for lineno, (rec, _rows) in enumerate(quantized(), 1):
                        check_record(rec, new_meta, src / UNITS_NAME, lineno)
                        f.write(dump_line(rec) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                write_meta(tmp_meta.parent, new_meta, tmp_meta.name, atomic=False)
            # units.jsonl is replaced here; meta.json right after (leaving the outer block)
        return validate_unit_set(src)

    out = Path(out_dir)  # type: ignore[arg-type]
    audio_root = os.path.relpath(meta.resolved_audio_root(src), out.absolute())
    with UnitSetWriter(out, kind=meta.kind, sample_rate=meta.sample_rate, hop=meta.hop,
                       producer=new_meta.producer, source_manifest=meta.source_manifest, audio_root=audio_root,
                       embedding_dim=meta.embedding_dim, vocab_size=new_meta.vocab_size,
                       special_ids=new_meta.special_ids) as writer:
        for rec, rows in quantized():
            writer.add(**rec.to_dict(), embeddings=rows)
    if meta.extra:  # keys the writer does not know about travel too
        written = read_meta(out)
        written.extra = dict(meta.extra)
        write_meta(out, written)
    return validate_unit_set(out)
