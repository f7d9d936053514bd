"""Structured YAML configs with ``key=value`` overrides (omegaconf), one loader for all tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

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
