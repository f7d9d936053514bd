"""Error types of speechunits.

Every error that comes from bad input names the file (and line, where there is one)
and says what was expected and what was found. Catch :class:`SpeechUnitsError` to
handle them all.
"""

from __future__ import annotations

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
