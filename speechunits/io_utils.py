"""Atomic file writes and hashing helpers shared by every writer in the toolkit.

Rule: nothing is ever written in place. Writers produce ``.<name>.<host>.<pid>.<rand>.tmp<suffix>``
in the destination directory and ``os.replace`` it onto the final name, so a killed job leaves
either the old file or the new one, never a partial one. What a kill leaves instead is the
temporary itself. Two sweeps remove it: the next write of the same name on the same host
removes the temporaries of dead writers (:func:`remove_stale_temporaries`), and a job that alone
writes a directory removes every temporary in it (:func:`remove_temporaries`; a sharded job at
its merge, when no shard job writes any more), names never written again included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from speechunits.errors import ConfigError, OutputError, SpeechUnitsError
from speechunits.killpoints import kill_point


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str], temporary_prefix: str | None = None) -> Iterator[None]:
    """Turn an :class:`OSError` of a full disk, an exceeded quota, a read-only file system or a
    refused permission (:data:`~speechunits.errors.OUTPUT_ERRNOS`) raised in the block into an
    :class:`~speechunits.errors.OutputError` naming ``path`` (or the file the error names, when
    that is another file; a file whose name starts with ``temporary_prefix`` is a temporary
    that stands for ``path``). Other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        named = exc.filename if exc.filename not in (None, "") else None
        if named is not None and temporary_prefix is not None and Path(named).name.startswith(temporary_prefix):
            named = None
        err = OutputError.from_os_error(exc, path if named is None else named)
        if err is None:
            raise
        raise err from exc


def _pid_alive(pid: int) -> bool:
    """True when process ``pid`` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: the signal check decides


def temporary_prefix(path: str | os.PathLike[str]) -> str:
    """The name prefix of this process's temporaries for ``path``: ``.<name>.<host>.<pid>.``
    (:func:`remove_stale_temporaries` recognises a killed writer's by it)."""
    return f".{Path(path).name}.{socket.gethostname()}.{os.getpid()}."


_HIDDEN_NAMES: dict[str, list[str]] = {}
"""Directory -> its hidden names that may be temporaries, listed at this process's first write
there: one scan per directory, not one per write (an output directory may hold a corpus)."""


def _hidden_names(directory: Path) -> list[str]:
    key = os.path.abspath(directory)
    names = _HIDDEN_NAMES.get(key)
    if names is None:
        try:
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if e.name.startswith(".") and (".tmp" in e.name or e.name.endswith(".old"))]
        except OSError:
            names = []
        _HIDDEN_NAMES[key] = names
    return names


def _remove_temporary(path: Path) -> None:
    """Delete a temporary file, or a temporary directory with its contents; one already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(path: str | os.PathLike[str], tails: tuple[str, ...] | None = None) -> list[Path]:
    """Remove the temporaries of ``path`` (named :func:`temporary_prefix` + random + a tail of
    ``tails``; default ``.tmp<suffix>``, :func:`atomic_path`'s) that writers on this host left when
    they were killed (their process is gone); files or whole directories. A live writer's
    temporary, or one of another host (its pid cannot be checked from here), is kept. Returns
    the removed. The directory is listed once per process (at its first write there), so a
    temporary a writer killed later leaves is for the next run (or a job's merge) to remove."""
    final = Path(path)
    host = socket.gethostname()
    prefix = f".{final.name}."
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    names = _hidden_names(final.parent)
    for tail in tails if tails is not None else (".tmp" + final.suffix,):
        for name in [n for n in names if n.startswith(prefix) and n.endswith(tail)]:
            middle = name[len(prefix): len(name) - len(tail)]
            parts = middle.rsplit(".", 2)  # host (may hold dots), pid, mkstemp's random part (no dots)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            pid = int(parts[1])
            if pid == os.getpid() or _pid_alive(pid):
                continue
            tmp = final.parent / name
            _remove_temporary(tmp)
            names.remove(name)
            removed.append(tmp)
    return removed


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # the umask can only be read by setting it: read once, at import


def default_mode(directory: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file (directory) under the process
    umask: ``tempfile`` makes its temporaries 0600 (0700), which a rename would carry over to
    the final file and hide outputs from the other users of a shared machine."""
    return (0o777 if directory else 0o666) & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the suffix of ``path`` so libraries that infer the format from
    the extension (soundfile, numpy) still work. On any exception the temporary is removed;
    a full disk or a read-only/unwritable directory becomes an
    :class:`~speechunits.errors.OutputError` naming ``path`` (the final name, not the temporary).
    """
    final = Path(path)
    prefix = f".{final.name}."
    with output_errors(final):  # names the directory that could not be made
        final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)  # a killed writer's, so a resumed job leaves none behind
    with output_errors(final, prefix):  # the file meant, not the random temporary name
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(final), suffix=".tmp" + final.suffix,
                                        dir=final.parent)
    os.fchmod(fd, default_mode())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with output_errors(final, prefix):
            yield tmp
            kill_point("atomic-write", final.name)  # the temporary complete, the final name not yet there
            os.replace(tmp, final)
        kill_point("atomic-renamed", final.name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}(\.spool|\.raw)?\.tmp(\.[^.]+)?$")
"""Names of the temporaries of this toolkit's writers (``tempfile`` with a ``.<final name>.``
prefix and a ``.tmp`` suffix): :func:`atomic_path`'s files, unit-set spools, directory writes."""


def remove_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries (:data:`TEMPORARY_NAME`) killed writers left under ``root``
    (recursively); returns them. Call it only where no other process writes under ``root``."""
    base = Path(root)
    found = sorted(p for p in base.rglob(".*") if TEMPORARY_NAME.match(p.name)) if base.is_dir() else []
    for path in found:
        _remove_temporary(path)
    return found


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as the toolkit writes JSON files: sorted keys, UTF-8 as is, a trailing newline."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (:func:`json_text`) to ``path`` atomically."""
    atomic_write_text(path, json_text(obj, indent))


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of the sorted (relative name, sha256) list of a directory's files
    (e.g. a Hugging Face checkpoint directory)."""
    base = Path(path)
    if base.is_dir():
        files = sorted(p for p in base.rglob("*") if p.is_file())
        return sha256_json([[p.relative_to(base).as_posix(), sha256_file(p)] for p in files])
    return sha256_file(base)


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON encoding of ``obj`` (sorted keys, no spaces)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_npy(path: str | os.PathLike[str], error: type[SpeechUnitsError], what: str,
             mmap_mode: str | None = None) -> Any:
    """``np.load`` of an ``.npy`` file (no pickles); any failure to read it becomes ``error``
    naming the file: truncation and bad sizes (ValueError, EOFError, OSError), and also a
    damaged header, on which numpy raises ``tokenize.TokenError`` or ``SyntaxError``."""
    import numpy as np

    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 - every way a damaged file fails, one error type
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise error(path, f"unreadable or truncated {what} ({type(err).__name__}: {first})") from None


def index_files(root: str | os.PathLike[str], suffix: str) -> dict[str, Path]:
    """Map ``<stem>`` -> path of every ``*<suffix>`` file under ``root`` (recursive); stems must be unique."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(base, f"expected a directory of *{suffix} files, found none")
    index: dict[str, Path] = {}
    for path in sorted(base.rglob(f"*{suffix}")):
        stem = path.name[: -len(suffix)]
        if stem in index:
            raise ConfigError(path, f"utterance id {stem!r} appears twice (also {index[stem]})")
        index[stem] = path
    return index


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent) for the block: a second
    process asking for the same lock waits until the first leaves it (or dies: the kernel
    drops the lock with the process, so a killed holder never blocks the next run)."""
    import fcntl

    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_json_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object stored at ``path``, or None when it is absent, unreadable or not an
    object (a record that cannot be trusted is treated as no record: the work is redone)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        stored = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return stored if isinstance(stored, dict) else None
