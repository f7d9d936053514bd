"""Error types of speechunits.

Every error that comes from bad input names the file (and line, where there is one)
and says what was expected and what was found. Catch :class:`SpeechUnitsError` to
handle them all.
"""

from __future__ import annotations

import errno as _errno
from os import PathLike
from pathlib import Path


class SpeechUnitsError(Exception):
    """Base class: ``<path>[:<line>]: <problem>``."""

    def __init__(self, path: str | PathLike[str] | None, problem: str, line: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.line = line
        where = "" if path is None else str(path) + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {problem}" if where else problem)


class AudioError(SpeechUnitsError):
    """Unreadable, empty, truncated, non-finite or otherwise unusable audio."""


class ManifestError(SpeechUnitsError):
    """A malformed or inconsistent corpus manifest / Kaldi data dir / corpus layout."""


class AlignmentError(SpeechUnitsError):
    """A malformed TextGrid or CTM alignment file."""


class UnitFormatError(SpeechUnitsError):
    """A unit set (meta.json, units.jsonl, embeddings) that violates the unit-token format."""


class CheckpointError(SpeechUnitsError):
    """A truncated, unreadable or mismatched model checkpoint."""


class ConfigError(SpeechUnitsError):
    """An invalid configuration value or command-line option."""


class ExternalToolError(SpeechUnitsError):
    """A required external program (festival, espeak-ng, sox) is missing or failed."""


class InternalError(SpeechUnitsError):
    """A broken invariant of the toolkit itself (a bug to report), never a problem of the input."""


class DataError(SpeechUnitsError):
    """A stored per-utterance data file (an F0 store, extracted features) that is missing, unreadable or malformed."""


OUTPUT_ERRNOS: dict[int, str] = {
    _errno.ENOSPC: "no space left on device",
    _errno.EDQUOT: "disk quota exceeded",
    _errno.EROFS: "read-only file system",
    _errno.EACCES: "permission denied",
}
"""The errno values of a write that failed because of where it writes (not what): -> the problem's words."""


class OutputError(SpeechUnitsError):
    """An output that cannot be written: no space left on device, disk quota exceeded, read-only
    file system, permission denied. Atomic writes leave no partial file under a final name, so
    rerunning the same command once the cause is fixed resumes (or redoes) the work."""

    def __init__(self, path: str | PathLike[str] | None, problem: str, errno: int | None = None) -> None:
        super().__init__(path, problem)
        self.errno = errno

    @classmethod
    def from_os_error(cls, err: OSError, path: str | PathLike[str] | None = None) -> OutputError | None:
        """The OutputError for ``err`` (naming ``path``, else the file ``err`` names), or None when
        ``err`` is not one of :data:`OUTPUT_ERRNOS`."""
        problem = OUTPUT_ERRNOS.get(err.errno) if err.errno is not None else None
        if problem is None:
            return None
        code = _errno.errorcode.get(err.errno, str(err.errno))
        if err.errno in (_errno.ENOSPC, _errno.EDQUOT):
            advice = "free some space, then rerun the same command: it resumes"
        else:
            advice = "make the output directory writable (or choose another), then rerun the same command"
        where = path if path is not None else err.filename
        return cls(where, f"{problem} (errno {err.errno} {code}); {advice}", err.errno)
