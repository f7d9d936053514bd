"""``speechunits slu-cil`` under torchrun, recording which rank opens files for writing.

A Python audit hook logs every file this rank opens for writing (``open`` with a write
mode, ``os.open`` with a write/create flag) and every rename, under the directory
``$SLU_DDP_WATCH``; at exit the list goes to ``$SLU_DDP_WRITES/rank<r>.json`` (outside the
watched directory). Arguments are those of ``slu-cil``. Used by tests/test_slu_ddp.py.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _watch(root: Path, report: Path) -> None:
    prefix = str(root.resolve())
    seen: list[str] = []

    def inside(p: object) -> bool:
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        return isinstance(p, (str, os.PathLike)) and os.path.abspath(p).startswith(prefix)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS)
            if writes and inside(path):
                seen.append(f"open {path}")
        elif event == "os.rename" and inside(args[1]):
            seen.append(f"rename {args[1]}")

    def dump() -> None:
        report.mkdir(parents=True, exist_ok=True)
        (report / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(seen))

    sys.addaudithook(hook)
    atexit.register(dump)


def main() -> int:
    _watch(Path(os.environ["SLU_DDP_WATCH"]), Path(os.environ["SLU_DDP_WRITES"]))
    from speechunits.slu import cil_cli

    parser = argparse.ArgumentParser()
    cil_cli.add_arguments(parser)
    return cil_cli.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
