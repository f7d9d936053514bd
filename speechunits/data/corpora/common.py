"""Checks shared by the corpus loaders: corpus/split directories and id-keyed matching.

Every problem is a :class:`ManifestError` that names the file or directory, says which
layout was expected and what was found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from speechunits.errors import ManifestError

PathLike = str | os.PathLike[str]


def require_corpus_dir(root: PathLike, corpus: str, layout: str) -> Path:
    """``root`` as an absolute Path; ManifestError naming the expected ``layout`` if it is not a directory."""
    path = Path(root).absolute()
    if not path.exists():
        raise ManifestError(path, f"{corpus} corpus directory does not exist; expected the layout {layout}")
    if not path.is_dir():
        raise ManifestError(path, f"expected the {corpus} corpus directory ({layout}), found a file")
    return path


def require_file(path: Path, corpus: str, what: str) -> Path:
    """``path`` itself; ManifestError if it is not an existing regular file."""
    if not path.is_file():
        found = "nothing" if not path.exists() else "a directory"
        raise ManifestError(path, f"expected the {corpus} {what} here, found {found}")
    return path


def describe_missing_split(path: Path, split: str, corpus: str, present: Iterable[str]) -> ManifestError:
    """The error for a split directory/file that is not there, listing what is."""
    found = sorted(present)
    listing = ", ".join(found) if found else "none"
    return ManifestError(path, f"{corpus} split {split!r} is missing (splits present: {listing})")


def visible_children(path: Path) -> list[Path]:
    """Entries of a directory without hidden ones (``.DS_Store``, editor files), sorted by name."""
    return sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
