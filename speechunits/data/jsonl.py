"""JSONL manifests: one ``Utterance.to_dict()`` JSON object per line, nothing else.

Reading resolves a relative ``audio`` path against the directory holding the manifest
(never the current directory), so a corpus directory can be moved with its manifest;
``wav.scp``-style pipe commands (ending in ``|``) are kept as they are. Malformed lines
raise :class:`ManifestError` with ``file:line``.

:func:`load_manifest` accepts either a Kaldi data directory or a ``.jsonl`` file: it is
what every ``--data`` option takes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from speechunits.data.kaldi import read_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError
from speechunits.io_utils import atomic_path

MANIFEST_FILE = "manifest.jsonl"
"""The JSONL manifest's name inside a data directory (beside the Kaldi files)."""

PathLike = str | os.PathLike[str]

_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "speaker": (str,),
    "num_samples": (int,),
    "sample_rate": (int,),
    "duration": (int, float),
    "extra": (dict,),
}


def write_jsonl_manifest(utts: Sequence[Utterance], path: PathLike) -> None:
    """Write utterances (in the given order) as a JSONL manifest, atomically.

    Audio paths are written as given; duplicate ids raise ManifestError.
    """
    path = Path(path)
    seen: set[str] = set()
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for utt in utts:
                if utt.id in seen:
                    raise ManifestError(path, f"duplicate utterance id {utt.id!r}")
                seen.add(utt.id)
                try:
                    line = json.dumps(utt.to_dict(), ensure_ascii=False, sort_keys=True, allow_nan=False)
                except (TypeError, ValueError) as err:
                    raise ManifestError(path, f"utterance {utt.id!r} is not JSON-serialisable ({err})") from err
                f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def json_object_line(path: Path, lineno: int, raw: str) -> dict[str, Any]:
    """One line of a JSON-lines file as a JSON object; ManifestError with ``file:line`` when it is
    not valid JSON or not an object. Every JSONL reader of the toolkit parses its lines with it."""
    try:
        obj: Any = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ManifestError(path, f"invalid JSON ({err.msg} at column {err.colno})", lineno) from None
    except (ValueError, RecursionError) as err:  # an integer over Python's digit limit; nesting too deep
        raise ManifestError(path, f"invalid JSON ({type(err).__name__}: {err})", lineno) from None
    if not isinstance(obj, dict):
        raise ManifestError(path, f"expected a JSON object, found {type(obj).__name__}", lineno)
    return obj


def read_json_file(path: Path, missing: str) -> Any:
    """The JSON document in ``path``; ManifestError naming the file with ``missing`` when it does not
    exist, and with the parser's message and line when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, missing) from None
    except json.JSONDecodeError as err:
        raise ManifestError(path, f"invalid JSON ({err.msg})", err.lineno) from None
    except UnicodeDecodeError as err:
        raise ManifestError(path, f"expected UTF-8 text ({err})") from None
    except (ValueError, RecursionError) as err:  # an integer over Python's digit limit; nesting too deep
        raise ManifestError(path, f"invalid JSON ({type(err).__name__}: {err})") from None


def _parse_line(path: Path, lineno: int, raw: str) -> Utterance:
    """One manifest line -> Utterance, with file:line errors."""
    obj = json_object_line(path, lineno, raw)
    for key in ("id", "audio"):
        if key not in obj:
            raise ManifestError(path, f"missing required field {key!r}", lineno)
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise ManifestError(path, f"field {key!r} must be a non-empty string, found {obj[key]!r}", lineno)
    for key, types in _FIELD_TYPES.items():
        value = obj.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in types)
            raise ManifestError(path, f"field {key!r} must be {names}, found {value!r}", lineno)
        if key in ("num_samples", "sample_rate", "duration") and value is not None and not (
            0 <= value < 2**63 and math.isfinite(value)
        ):  # as the Kaldi reader's utt2dur / utt2num_samples (NaN, Infinity, -1 and 10**400 parse as JSON)
            raise ManifestError(path, f"field {key!r} must be a finite non-negative number below 2**63, "
                                      f"found {value!r}", lineno)
    utt = Utterance.from_dict(obj)
    if not utt.audio.rstrip().endswith("|") and not os.path.isabs(utt.audio):
        utt.audio = str(path.parent.absolute() / utt.audio)
    return utt


def iter_jsonl_manifest(path: PathLike) -> Iterator[Utterance]:
    """Stream utterances from a JSONL manifest (blank lines skipped; duplicate ids rejected)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "manifest file does not exist" if not path.exists() else "expected a file")
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except UnicodeDecodeError as err:
                raise ManifestError(path, f"expected UTF-8 text ({err})", lineno + 1) from err
            if not raw:
                break
            lineno += 1
            if not raw.strip():
                continue
            utt = _parse_line(path, lineno, raw)
            if utt.id in first_line:
                raise ManifestError(path, f"duplicate id {utt.id!r} (first on line {first_line[utt.id]})", lineno)
            first_line[utt.id] = lineno
            yield utt


def read_jsonl_manifest(path: PathLike) -> list[Utterance]:
    """Read a whole JSONL manifest; an empty manifest is an error."""
    utts = list(iter_jsonl_manifest(path))
    if not utts:
        raise ManifestError(path, "manifest holds no utterances")
    return utts


def load_manifest(path_or_dir: PathLike, *, require_text: bool = True) -> list[Utterance]:
    """Read a Kaldi data directory, a directory holding only ``manifest.jsonl``, or a ``.jsonl`` manifest.

    With ``require_text``, every utterance of a manifest must have a transcript too.
    """
    path = Path(path_or_dir)
    if path.is_dir() and not (path / "wav.scp").is_file() and (path / MANIFEST_FILE).is_file():
        utts = read_jsonl_manifest(path / MANIFEST_FILE)
        if require_text:
            no_text = next((u.id for u in utts if u.text is None), None)
            if no_text is not None:
                raise ManifestError(path / MANIFEST_FILE, f"utterance {no_text!r} has no transcript ('text')")
        return utts
    if path.is_dir():
        return read_kaldi_dir(path, require_text=require_text)
    if path.suffix == ".jsonl":
        return read_jsonl_manifest(path)
    found = "nothing" if not path.exists() else f"a file with suffix {path.suffix!r}"
    raise ManifestError(path, f"expected a Kaldi data directory or a .jsonl manifest, found {found}")


def load_manifests(paths: PathLike | Sequence[PathLike], *, require_text: bool = True) -> list[Utterance]:
    """:func:`load_manifest` of one source or of several, concatenated in order.

    An utterance id found in two sources is an error naming both (training on a combination
    of corpora, e.g. real and synthetic speech, must not silently shadow one of them).
    """
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not sources:
        raise ManifestError(None, "no data sources given")
    utts: list[Utterance] = []
    origin: dict[str, PathLike] = {}
    for source in sources:
        for utt in load_manifest(source, require_text=require_text):
            if utt.id in origin:
                raise ManifestError(source, f"utterance id {utt.id!r} is also in {origin[utt.id]}; "
                                            "ids must be unique across combined data sources")
            origin[utt.id] = source
            utts.append(utt)
    return utts
