"""Stage provenance: effective config, toolkit version, git commit and input hashes.

A stage's output directory is *complete* only when ``provenance.json`` exists in it and the
hash of the stored effective config equals the hash of the config asked for now. Changing a
parameter therefore redoes the work (``docs/architecture.md``, Conventions).
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from speechunits.io_utils import atomic_write_json, read_json_record, sha256_json

PROVENANCE_NAME = "provenance.json"


def toolkit_version() -> str:
    """Installed version of speechunits."""
    from speechunits import __version__

    return __version__


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the source tree this package was imported from, if any."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def input_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """Cheap fingerprint of input files/dirs: size and mtime (content hashing of corpora is too slow)."""
    result: dict[str, dict[str, Any]] = {}
    for p in paths:
        path = Path(p)
        if path.exists():
            st = path.stat()
            result[str(path)] = {"size": st.st_size, "mtime": int(st.st_mtime)}
        else:
            result[str(path)] = {"missing": True}
    return result


def write_provenance(
    out_dir: str | os.PathLike[str], config: Mapping[str, Any], inputs: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Write ``provenance.json`` into ``out_dir``; call this last, after all outputs are in place."""
    out = Path(out_dir) / PROVENANCE_NAME
    atomic_write_json(
        out,
        {
            "config": dict(config),
            "config_hash": sha256_json(dict(config)),
            "toolkit_version": toolkit_version(),
            "git_commit": git_commit(),
            "inputs": input_fingerprint(inputs),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return out


def invalidate_provenance(out_dir: str | os.PathLike[str]) -> None:
    """Work is about to change ``out_dir``: it is no longer a complete output of any config."""
    (Path(out_dir) / PROVENANCE_NAME).unlink(missing_ok=True)


def is_complete(out_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> bool:
    """True when ``out_dir`` holds a provenance record whose config hash matches ``config``."""
    stored = read_json_record(Path(out_dir) / PROVENANCE_NAME)
    return stored is not None and stored.get("config_hash") == sha256_json(dict(config))
