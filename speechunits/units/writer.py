"""Writing unit sets: :class:`UnitSetWriter` (plain, sharded, resumable) and :func:`merge_shards`.

Plain (no ``job``): ``units.jsonl`` (sorted by id), ``meta.json`` and, with embeddings,
``embeddings/shard.0.npy`` + ``embeddings/index.json`` appear on a successful ``__exit__``;
until then records go to a hidden spool file. If the ``with`` block raises, the spool files
are deleted and nothing is written; those of a killed writer are removed by the next writer of
the same set (:func:`speechunits.io_utils.remove_stale_temporaries`).

Sharded (``job``/``nj``): the same with ``units.JOB.jsonl``, ``meta.JOB.json``,
``embeddings/shard.JOB.npy`` and ``embeddings/index.JOB.json``; ``units.JOB.jsonl`` is written
last, so its presence means the shard is complete. :func:`merge_shards` joins the shards.

Resumable (``resume=True``, needs ``job``): records are appended to
``units.JOB.partial.jsonl`` (flushed per line, fsynced every ``fsync_every`` lines; embeddings
to ``embeddings/shard.JOB.partial.raw``, written before their line). A killed job leaves these
files behind; rerunning with the same settings reads them back, drops a truncated last line
(and embedding rows without a complete line), and exposes :attr:`UnitSetWriter.done_ids` so the
caller skips finished utterances. See ``docs/unit-format.md``.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.audio import is_pipe_command
from speechunits.errors import OutputError, UnitFormatError
from speechunits.io_utils import (atomic_path, atomic_write_json, output_errors, remove_stale_temporaries,
                                   temporary_prefix)
from speechunits.killpoints import kill_point
from speechunits.units.embeddings import (
    EMB_DIR,
    INDEX_NAME,
    ShardSpool,
    as_embedding_rows,
    open_shard,
    raw_rows,
    read_index_file,
    shard_name,
)
from speechunits.units.meta import META_NAME, UNITS_NAME, UnitSetMeta, read_meta_file, write_meta
from speechunits.units.reader import iter_unit_lines
from speechunits.units.record import UnitRecord, check_record, coerce_record, dump_line, parse_line
from speechunits.units.validate import ValidationReport, validate_unit_set

PathLike = str | os.PathLike[str]


def shard_units_name(job: int) -> str:
    return f"units.{job}.jsonl"


def partial_units_name(job: int) -> str:
    return f"units.{job}.partial.jsonl"


def shard_paths(out_dir: PathLike, job: int) -> list[Path]:
    """Every file ``UnitSetWriter(out_dir, job=job, ...)`` may leave in ``out_dir``, partial or finished."""
    out = Path(out_dir)
    emb = out / EMB_DIR
    return [out / partial_units_name(job), out / f"meta.{job}.partial.json", emb / f"shard.{job}.partial.raw",
            out / shard_units_name(job), out / f"meta.{job}.json", emb / f"index.{job}.json", emb / shard_name(job)]


class UnitSetWriter:
    """Context manager that writes one unit set (or one shard of it). See the module docstring."""

    def __init__(
        self,
        out_dir: PathLike,
        *,
        kind: str,
        sample_rate: int,
        hop: int,
        job: int | None = None,
        nj: int | None = None,
        producer: dict[str, Any] | None = None,
        source_manifest: str | None = None,
        audio_root: str | None = None,
        embedding_dim: int | None = None,
        vocab_size: int | None = None,
        special_ids: dict[str, int | None] | None = None,
        resume: bool = False,
        fsync_every: int = 50,
    ) -> None:
        self.out = Path(out_dir)
        if (job is None) != (nj is None) or (job is not None and not 0 <= job < nj):  # type: ignore[operator]
            raise UnitFormatError(self.out, f"need both job and nj with 0 <= job < nj, got job={job} nj={nj}")
        if resume and job is None:
            raise UnitFormatError(self.out, "resume=True needs job/nj (resumable writing is per shard)")
        meta_dict = UnitSetMeta(kind=kind, sample_rate=sample_rate, hop=hop, vocab_size=vocab_size,
                                embedding_dim=embedding_dim, producer=dict(producer or {}),
                                source_manifest=None if source_manifest is None else str(source_manifest),
                                audio_root=None if audio_root is None else str(audio_root), job=job, nj=nj).to_dict()
        if special_ids:
            meta_dict["special_ids"].update(special_ids)
        self.job, self.nj, self.resume, self.fsync_every = job, nj, resume, max(1, fsync_every)
        suffix = "" if job is None else f".{job}"
        self.meta_name = META_NAME if job is None else f"meta.{job}.json"
        self.units_path = self.out / (UNITS_NAME if job is None else shard_units_name(job))
        self.meta = UnitSetMeta.from_dict(meta_dict, self.out / self.meta_name)
        self.meta.unit_dir = self.out
        self.emb_dir = self.out / EMB_DIR
        self.index_path = self.emb_dir / (INDEX_NAME if job is None else f"index{suffix}.json")
        self.shard_path = self.emb_dir / shard_name(job or 0)
        self.partial_path = self.out / partial_units_name(job) if resume else None  # type: ignore[arg-type]
        self.partial_meta_path = self.out / f"meta.{job}.partial.json" if resume else None
        self.raw_path: Path | None = self.emb_dir / f"shard.{job}.partial.raw" if resume else None
        self.done_ids: set[str] = set()
        self._entries: list[tuple[str, int, int]] = []  # (id, byte offset, byte length) in the spool
        self._id_set: set[str] = set()
        self._emb_index: dict[str, tuple[int, int]] = {}
        self._tokens = 0
        self._valid_bytes = 0
        self._spool: Any = None
        self._spool_path: Path | None = None
        self._emb: ShardSpool | None = None
        self._failed: Exception | None = None  # a spool write failed: no more lines (see _failing_write)
        self._created_emb_dir = False
        self._since_sync = 0
        self._open = False
        if resume:
            self._scan_partial()

    # ----------------------------------------------------------------- resume
    def _scan_partial(self) -> None:
        """Read back a previous run's partial shard (read-only); see :attr:`done_ids`."""
        assert self.partial_path is not None and self.partial_meta_path is not None
        if not self.partial_path.exists():
            return
        if self.partial_meta_path.is_file():
            stored = read_meta_file(self.partial_meta_path)
            mine, theirs = self.meta.shared(), stored.shared()
            if mine.get("embedding_dim") is None:
                mine["embedding_dim"] = theirs.get("embedding_dim")
            if mine != theirs:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise UnitFormatError(self.partial_path, f"partial shard was written with different settings "
                                                         f"({', '.join(diff)}); delete it or rerun with the same settings")
            self.meta.embedding_dim = stored.embedding_dim
        data = self.partial_path.read_bytes()
        entries: list[tuple[str, int, int, int]] = []  # id, offset, length, tokens
        offset, lineno = 0, 0
        while offset < len(data):
            lineno += 1
            nl = data.find(b"\n", offset)
            last = nl < 0 or nl == len(data) - 1
            if nl < 0:
                break  # truncated last line (killed mid-write): drop and redo
            raw = data[offset:nl]
            try:
                rec = parse_line(raw.decode("utf-8"), self.meta, self.partial_path, lineno)
            except (UnitFormatError, UnicodeDecodeError):
                if last:
                    break
                raise
            entries.append((rec.id, offset, nl + 1 - offset, rec.num_tokens))
            offset = nl + 1
        dim = self.meta.embedding_dim
        if dim is not None and self.raw_path is not None:
            have = raw_rows(self.raw_path, dim)
            total = sum(e[3] for e in entries)
            while entries and total > have:  # rows of the last lines never reached the disk
                total -= entries.pop()[3]
        row = 0
        for utt, off, length, ntok in entries:
            if utt in self.done_ids:
                raise UnitFormatError(self.partial_path, f"duplicate id {utt!r} in partial shard")
            self.done_ids.add(utt)
            self._entries.append((utt, off, length))
            if dim is not None:
                self._emb_index[utt] = (row, row + ntok)
                row += ntok
            self._tokens += ntok
        self._valid_bytes = entries[-1][1] + entries[-1][2] if entries else 0
        self._id_set = set(self.done_ids)

    # ---------------------------------------------------------------- context
    def __enter__(self) -> UnitSetWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resume:
            assert self.partial_path is not None and self.partial_meta_path is not None
            self._spool_path = self.partial_path
            self._spool = open(self.partial_path, "r+b" if self.partial_path.exists() else "w+b")
            self._spool.truncate(self._valid_bytes)
            self._spool.seek(0, os.SEEK_END)
            atomic_write_json(self.partial_meta_path, self.meta.to_dict())
            if self.meta.embedding_dim is not None:
                self._open_emb(self.meta.embedding_dim)
        else:
            remove_stale_temporaries(self.units_path, (".spool.tmp",))  # a killed writer's
            fd, name = tempfile.mkstemp(prefix=temporary_prefix(self.units_path), suffix=".spool.tmp", dir=self.out)
            self._spool_path = Path(name)
            self._spool = os.fdopen(fd, "w+b")
            if self.meta.embedding_dim is not None:
                self._open_emb(self.meta.embedding_dim)
        self._open = True
        return self

    def _open_emb(self, dim: int) -> None:
        if not self.emb_dir.exists():
            self._created_emb_dir = True
        if self.raw_path is None:
            self.emb_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.shard_path, (".raw.tmp",))  # a killed writer's
            fd, name = tempfile.mkstemp(prefix=temporary_prefix(self.shard_path), suffix=".raw.tmp", dir=self.emb_dir)
            os.close(fd)
            self.raw_path = Path(name)
        self._emb = ShardSpool(self.raw_path, dim, rows=sum(e - s for s, e in self._emb_index.values()))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._open = False
        if exc_type is None:
            try:
                self._finish()
                return
            except BaseException:
                self._abort()
                raise
        self._abort()

    def _abort(self) -> None:
        """Failure: a resumable shard keeps its (synced) partial files; otherwise nothing is left."""
        if self._spool is not None:
            with contextlib.suppress(Exception):
                self._spool.flush()
                if self.resume:
                    os.fsync(self._spool.fileno())
            with contextlib.suppress(Exception):
                self._spool.close()
        if self._emb is not None:
            with contextlib.suppress(Exception):
                self._emb.flush(fsync=self.resume)
            self._emb.close(delete=not self.resume)
        if not self.resume:
            if self._spool_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._spool_path.unlink()
            if self._created_emb_dir:
                with contextlib.suppress(OSError):
                    self.emb_dir.rmdir()

    # ------------------------------------------------------------------- add
    def add(
        self,
        *,
        id: str,
        audio: str,
        num_samples: int,
        sample_rate: int,
        starts: Any,
        ends: Any,
        units: Any = None,
        speaker: str | None = None,
        text: str | None = None,
        f0: Any = None,
        loudness: Any = None,
        embeddings: Any = None,
    ) -> UnitRecord:
        """Validate and append one utterance; returns the record as it will be stored."""
        if not self._open:
            raise UnitFormatError(self.units_path, "UnitSetWriter.add called outside its `with` block")
        if self._failed is not None:
            raise self._failed
        rec = coerce_record(dict(id=id, audio=str(audio), num_samples=num_samples, sample_rate=sample_rate,
                                 starts=starts, ends=ends, units=units, speaker=speaker, text=text, f0=f0,
                                 loudness=loudness), self.units_path)
        rec.audio = self._relative_audio(rec.audio)
        check_record(rec, self.meta, self.units_path)
        if rec.id in self._id_set:
            where = " (already finished by a previous run: skip ids in writer.done_ids)" if rec.id in self.done_ids else ""
            raise UnitFormatError(self.units_path, f"duplicate utterance id {rec.id!r}{where}")
        if embeddings is not None:
            if self._emb is None:
                if self._entries:
                    raise UnitFormatError(self.units_path, f"utterance {rec.id!r} has embeddings but earlier "
                                                           "utterances had none (all or none must have them)")
                rows = as_embedding_rows(embeddings, rec.num_tokens, self.meta.embedding_dim, self.units_path, rec.id)
                self.meta.embedding_dim = rows.shape[1]
                self._open_emb(rows.shape[1])
                if self.partial_meta_path is not None:
                    atomic_write_json(self.partial_meta_path, self.meta.to_dict())
            else:
                rows = as_embedding_rows(embeddings, rec.num_tokens, self.meta.embedding_dim, self.units_path, rec.id)
            assert self._emb is not None
            with self._failing_write(self._emb.raw_path if self.resume else self.shard_path):
                self._emb_index[rec.id] = self._emb.append(rows)
                self._emb.flush()
        elif self._emb is not None or self.meta.embedding_dim is not None:
            raise UnitFormatError(self.units_path, f"utterance {rec.id!r} has no embeddings but the unit set has "
                                                   f"embedding_dim {self.meta.embedding_dim} (all or none must have them)")
        blob = (dump_line(rec) + "\n").encode("utf-8")
        offset = self._spool.tell()
        kill_point("unit-line", self.partial_path.name if self.resume else "spool",
                   torn=lambda: (self._spool.write(blob[: len(blob) // 2]), self._spool.flush()))
        with self._failing_write(self._spool_path if self.resume else self.units_path):
            self._spool.write(blob)
            self._spool.flush()
        self._entries.append((rec.id, offset, len(blob)))
        self._id_set.add(rec.id)
        self._tokens += rec.num_tokens
        if self.resume:
            self._since_sync += 1
            if self._since_sync >= self.fsync_every:
                self.sync()
        return rec

    @contextlib.contextmanager
    def _failing_write(self, path: Path | None) -> Iterator[None]:
        """A spool write: a full disk or an unwritable file becomes an OutputError naming ``path``, and
        after any failed write the writer refuses further lines (another thread's line must not
        follow a cut one: the partial shard then ends in the cut line, which a resume drops)."""
        try:
            with output_errors(path if path is not None else self.units_path):
                yield
        except BaseException as exc:
            self._failed = exc if isinstance(exc, OutputError) else \
                UnitFormatError(self.units_path, f"an earlier write to this unit set failed: {exc!r}")
            raise

    def sync(self) -> None:
        """fsync the partial files (embedding rows first, then the lines that reference them)."""
        if self._emb is not None:
            self._emb.flush(fsync=True)
        self._spool.flush()
        os.fsync(self._spool.fileno())
        self._since_sync = 0

    def _relative_audio(self, audio: str) -> str:
        """An absolute path under the declared audio root is stored relative to it (pipe commands as they are)."""
        path = Path(audio)
        if self.meta.audio_root is None or not path.is_absolute() or is_pipe_command(audio):
            return audio
        root = os.path.normpath(self.meta.resolved_audio_root(self.out))
        try:
            return Path(os.path.normpath(path)).relative_to(root).as_posix()
        except ValueError:
            return audio

    @property
    def num_utterances(self) -> int:
        return len(self._entries)

    @property
    def ids(self) -> frozenset[str]:
        """Ids written so far, finished ones of a resumed run included."""
        return frozenset(self._id_set)

    # ---------------------------------------------------------------- finish
    def _finish(self) -> None:
        self.meta.num_utterances = len(self._entries)
        self.meta.num_tokens = self._tokens
        if self._emb is not None:
            self._emb.finish(self.shard_path)
            self._emb = None
            name = self.shard_path.name
            atomic_write_json(self.index_path, {u: [name, s, e] for u, (s, e) in sorted(self._emb_index.items())},
                              indent=None)
        elif self.job is None and self.index_path.exists():
            self.index_path.unlink()  # a stale index of an older unit set in this directory
        write_meta(self.out, self.meta, self.meta_name)
        self._spool.flush()
        entries = sorted(self._entries)
        with atomic_path(self.units_path) as tmp, open(tmp, "wb") as out:
            if entries == self._entries:
                self._spool.seek(0)
                end = entries[-1][1] + entries[-1][2] if entries else 0
                while end > 0 and (chunk := self._spool.read(min(1 << 22, end))):
                    out.write(chunk)
                    end -= len(chunk)
            else:
                for _utt, offset, length in entries:
                    self._spool.seek(offset)
                    out.write(self._spool.read(length))
            out.flush()
            os.fsync(out.fileno())
            assert self._spool_path is not None
            if not self.resume:  # read to the end: removed before the rename, so that no kill leaves a
                self._spool_path.unlink()  # spool beside a finished set (its rerun writes nothing)
        self._spool.close()
        if self.resume:
            self._spool_path.unlink()
        if self.partial_meta_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.partial_meta_path.unlink()


# -------------------------------------------------------------------- merge
def _shard_stream(path: Path, meta: UnitSetMeta, job: int) -> Iterator[tuple[str, int, int, str, UnitRecord]]:
    """``(id, job, line, text, record)`` of one shard, validated and checked for sort order."""
    prev: str | None = None
    for lineno, text in iter_unit_lines(path):
        rec = parse_line(text, meta, path, lineno)
        if prev is not None and not rec.id > prev:
            problem = "duplicate" if rec.id == prev else "not sorted:"
            raise UnitFormatError(path, f"{problem} id {rec.id!r} after {prev!r} (ids must be strictly increasing)", lineno)
        prev = rec.id
        yield rec.id, job, lineno, text, rec


def _merged_meta(out: Path, nj: int) -> UnitSetMeta:
    """The shards' common meta (they must agree on everything but counts and job)."""
    metas = [read_meta_file(out / f"meta.{j}.json") for j in range(nj)]
    dims = {m.embedding_dim for m in metas} - {None}
    if len(dims) > 1:
        raise UnitFormatError(out / "meta.0.json", f"shards disagree on embedding_dim: {sorted(dims)}")
    for j, m in enumerate(metas):
        path = out / f"meta.{j}.json"
        if m.job != j or m.nj != nj:
            raise UnitFormatError(path, f"expected job {j} of nj {nj}, found job {m.job} of nj {m.nj}")
        a, b = metas[0].shared(), m.shared()
        a["embedding_dim"] = b["embedding_dim"] = None
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise UnitFormatError(path, f"shard meta disagrees with meta.0.json on {', '.join(diff)}")
    merged = UnitSetMeta.from_dict({**metas[0].to_dict(), "embedding_dim": next(iter(dims), None)}, out / META_NAME)
    merged.job = merged.nj = None
    merged.unit_dir = out
    return merged


def merge_shards(out_dir: PathLike, nj: int) -> ValidationReport:
    """Merge ``units.{0..nj-1}.jsonl`` (+ embeddings indexes) into one validated unit set.

    Ids must be unique across shards (a duplicate names both shard files and lines). The
    merged ``units.jsonl``, ``meta.json`` and ``embeddings/index.json`` are written atomically
    and validated; only then are ``units.JOB.jsonl``, ``meta.JOB.json`` and
    ``embeddings/index.JOB.json`` removed (``embeddings/shard.JOB.npy`` stay: the index points
    into them). Calling it again after a completed merge just re-validates.
    """
    out = Path(out_dir)
    if nj < 1:
        raise UnitFormatError(out, f"nj must be >= 1, got {nj}")
    paths = [out / shard_units_name(j) for j in range(nj)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        if len(missing) == nj and (out / META_NAME).is_file() and (out / UNITS_NAME).is_file():
            return validate_unit_set(out)  # merged before
        notes = [p.name + (" (job unfinished: a partial file exists)" if (out / partial_units_name(j)).exists() else "")
                 for j, p in enumerate(paths) if p in missing]
        raise UnitFormatError(missing[0], f"missing {len(missing)} of {nj} shard(s): {', '.join(notes)}")
    meta = _merged_meta(out, nj)
    index_paths = [out / EMB_DIR / f"index.{j}.json" for j in range(nj)]
    indexes = [read_index_file(p) if p.is_file() else None for p in index_paths]
    has_emb = any(ix is not None for ix in indexes)
    merged_index: dict[str, list[Any]] = {}
    shard_rows: dict[str, int] = {}
    count = tokens = 0
    streams = [_shard_stream(p, meta, j) for j, p in enumerate(paths)]
    with atomic_path(out / UNITS_NAME) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            prev: tuple[str, int, int] | None = None
            for utt, j, line, text, rec in heapq.merge(*streams, key=lambda t: t[0]):
                if prev is not None and prev[0] == utt:
                    raise UnitFormatError(paths[j], f"duplicate id {utt!r}: also at {paths[prev[1]]}:{prev[2]}", line)
                prev = (utt, j, line)
                if has_emb:
                    ix = indexes[j]
                    if ix is None or utt not in ix:
                        raise UnitFormatError(index_paths[j], f"no embeddings for utterance {utt!r} "
                                                              f"({paths[j].name} line {line})")
                    name, s, e = ix[utt]
                    if e - s != rec.num_tokens:
                        raise UnitFormatError(index_paths[j], f"utterance {utt!r}: {e - s} embedding rows for "
                                                              f"{rec.num_tokens} tokens")
                    if name not in shard_rows:
                        shard_rows[name] = open_shard(out / EMB_DIR / name, meta.embedding_dim).shape[0]
                    if e > shard_rows[name]:
                        raise UnitFormatError(out / EMB_DIR / name, f"utterance {utt!r}: rows [{s}, {e}) beyond the "
                                                                    f"shard's {shard_rows[name]} rows (truncated shard?)")
                    merged_index[utt] = [name, s, e]
                f.write(text + "\n")
                count += 1
                tokens += rec.num_tokens
            f.flush()
            os.fsync(f.fileno())
        meta.num_utterances, meta.num_tokens = count, tokens
        if has_emb:
            atomic_write_json(out / EMB_DIR / INDEX_NAME, merged_index, indent=None)
        elif (out / EMB_DIR / INDEX_NAME).exists():
            (out / EMB_DIR / INDEX_NAME).unlink()
        write_meta(out, meta)
    report = validate_unit_set(out)
    for j in range(nj):
        for p in (paths[j], out / f"meta.{j}.json", index_paths[j]):
            kill_point("merge-remove-shard", p.name)
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    report.warnings = [w for w in report.warnings if not w.startswith("unmerged shard files")]
    return report


def write_unit_set(out_dir: PathLike, records: list[UnitRecord], embeddings: dict[str, np.ndarray] | None = None,
                   **writer_kwargs: Any) -> None:
    """Convenience: write whole records (and optional per-id embeddings) through a UnitSetWriter."""
    with UnitSetWriter(out_dir, **writer_kwargs) as w:
        for rec in records:
            w.add(**rec.to_dict(), embeddings=None if embeddings is None else embeddings[rec.id])


__all__ = ["UnitSetWriter", "merge_shards", "shard_paths", "write_unit_set"]
