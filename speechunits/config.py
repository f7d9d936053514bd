"""Structured YAML configs with ``key=value`` overrides (omegaconf), one loader for all tools; value grids."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf
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
        layers.append((str(p), lambda: _load_yaml(p)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError("<command line>", f"expected key=value overrides, found {bad}")
        layers.append(("<command line>", lambda: OmegaConf.from_dotlist(list(overrides))))
    for source, make in layers:
        try:
            merged = OmegaConf.merge(merged, make())
        except (OmegaConfBaseException, TypeError) as err:  # TypeError: a list where the schema has a mapping
            raise ConfigError(source, str(err).splitlines()[0]) from err
        except (yaml.YAMLError, ValueError, RecursionError) as err:  # an override value that is not YAML
            raise ConfigError(source, f"invalid YAML value ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:  # e.g. an interpolation ${...} that does not resolve
        sources = [source for source, _make in layers if source is not None]
        key = getattr(err, "full_key", None)
        raise ConfigError(" + ".join(sources) or None, str(err).splitlines()[0] + (f" (key {key})" if key else "")) from err
    assert isinstance(cfg, schema)
    return cfg


def _load_yaml(path: Path) -> DictConfig:
    """The YAML mapping in ``path``; ConfigError naming the file (and line) when it is not UTF-8,
    not YAML (duplicate keys included) or not a mapping at the top level."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(path, f"expected UTF-8 text ({err})") from None
    except OSError as err:
        raise ConfigError(path, f"unreadable ({err})") from None
    try:
        loaded = OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(path, f"invalid YAML ({problem})", mark.line + 1 if mark is not None else None) from None
    except (ValueError, RecursionError) as err:  # an integer over Python's digit limit; nesting too deep
        raise ConfigError(path, f"invalid YAML ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    except (OmegaConfBaseException, OSError) as err:  # OSError: a scalar document ("Invalid loaded object type")
        raise ConfigError(path, str(err).splitlines()[0]) from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(path, f"expected a YAML mapping of config keys, found {type(loaded).__name__}")
    return loaded


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
