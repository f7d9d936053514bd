"""Where numba keeps the compiled code of the toolkit's ``@njit(cache=True)`` kernels.

numba's default puts its cache files (``*.nbi``, ``*.nbc``) in ``__pycache__`` next to the
source when that directory is writable: inside the installed package, or the git checkout of
an editable install, where they pile up per numba version and CPU. The toolkit sends them to
a user cache directory instead, chosen at package import (before any kernel module imports
numba):

1. ``NUMBA_CACHE_DIR`` when the user set it (non-empty): numba's own setting, left alone;
2. else ``$XDG_CACHE_HOME/speechunits/numba`` when ``XDG_CACHE_HOME`` is an absolute path;
3. else ``~/.cache/speechunits/numba``.

The choice is exported as ``NUMBA_CACHE_DIR`` (so subprocesses, e.g. local jobs, agree) and,
when numba was imported before the toolkit, also written to ``numba.config.CACHE_DIR``, which
numba reads when a cached function is decorated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "NUMBA_CACHE_DIR"


def default_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/speechunits/numba`` or ``~/.cache/speechunits/numba``; None without a home."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "speechunits" / "numba"
    home = os.path.expanduser("~")
    if not home or home == "~":
        return None
    return Path(home) / ".cache" / "speechunits" / "numba"


def configure_numba_cache() -> str | None:
    """Point numba's cache at the user cache directory unless ``NUMBA_CACHE_DIR`` is set; returns the directory."""
    chosen = os.environ.get(ENV, "")
    if not chosen:
        default = default_cache_dir()
        if default is None:
            return None
        chosen = str(default)
        os.environ[ENV] = chosen
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CACHE_DIR", None) != chosen:
        config.CACHE_DIR = chosen
    return chosen


__all__ = ["ENV", "configure_numba_cache", "default_cache_dir"]
