"""Structured YAML configs with ``key=value`` overrides (omegaconf), one loader for all tools; value grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from speechunits.errors import ConfigError

T = TypeVar("T")


def load_structured(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Dataclass defaults <- ``base`` <- YAML ``path`` <- ``key=value`` overrides, as a ``schema`` object.

    Unknown keys and wrong types raise :class:`ConfigError` naming the file (or
    ``<command line>``) where they came from.
    """
    merged = OmegaConf.structured(schema)
    layers: list[tuple[str | None, Any]] = []
    if base is not None:
        layers.append((None, lambda: OmegaConf.create(dict(base))))
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(p, "config file not found")
        layers.append((str(p), lambda: OmegaConf.load(p)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError("<command line>", f"expected key=value overrides, found {bad}")
        layers.append(("<command line>", lambda: OmegaConf.from_dotlist(list(overrides))))
    for source, make in layers:
        try:
            merged = OmegaConf.merge(merged, make())
        except OmegaConfBaseException as err:
            raise ConfigError(source, str(err).splitlines()[0]) from err
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, schema)
    return cfg


def parse_grid(text: str, option: str = "--grid") -> tuple[float, ...]:
    """``"MIN:MAX:STEP"`` (MAX inclusive) or a comma list -> the grid of values of ``option``."""
    try:
        if ":" in text:
            lo, hi, step = (float(v) for v in text.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError
            return tuple(round(v, 6) for v in np.arange(lo, hi + step / 2, step))
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise ConfigError(None, f"{option}: expected MIN:MAX:STEP or a comma list of numbers, got {text!r}") from err
