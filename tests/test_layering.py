"""The package's floors (docs/architecture.md): a module imports only from its own floor or below,
and a component never imports another component. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "speechunits"

FLOORS: list[set[str]] = [
    {"__init__", "errors", "io_utils", "device", "config", "audio", "provenance", "jobs", "numba_cache", "killpoints", "slurm", "launchers"},
    {"data", "features", "text"},
    {"units"},
    {"eval"},
    {"train"},
    {"encoders"},
    {"sylber", "quantize", "slu", "vocoder", "asr", "tts", "lm", "hubert"},
    {"tokenize", "unit2speech", "text2speech"},
    {"cli", "__main__"},
]
"""Lowest first. The second-to-last floors are the components (which never import each other)
and tokenize, which is Sylber's corpus tokenization and stands on it."""

COMPONENTS = next(names for names in FLOORS if "sylber" in names)


def floor_of(top: str) -> int:
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    raise AssertionError(f"speechunits.{top} is on no floor: add it to FLOORS and docs/architecture.md")


def top_level(path: Path) -> str:
    """``speechunits/<top>/...`` or ``speechunits/<top>.py`` -> ``<top>``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def imported_tops(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, top-level speechunits module) of every import in ``path`` (or in ``source`` as if it
    were that file), relative ones resolved."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, str(path))
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
            if names[0] == "speechunits":  # from speechunits import x: a submodule, or a name of __init__
                names = [f"speechunits.{a.name}" if _is_module(a.name) else "speechunits.__init__" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "speechunits" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_top_level_module_has_a_floor() -> None:
    tops = {top_level(p) for p in PACKAGE.rglob("*.py")}
    for top in tops:
        floor_of(top)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_stay_on_their_floor(path: Path) -> None:
    me = top_level(path)
    mine = floor_of(me)
    bad = []
    for line, top in imported_tops(path):
        if top == me:
            continue
        theirs = floor_of(top)
        if theirs > mine:
            bad.append(f"line {line}: speechunits.{top} is on a higher floor ({theirs} > {mine})")
        elif me in COMPONENTS and top in COMPONENTS:
            bad.append(f"line {line}: component {me} imports component {top}; move what they share down a floor")
    assert not bad, f"{path.relative_to(PACKAGE.parent)}:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    """The parser must catch what the rule is about: an import inside a function, a relative one."""
    source = "import os\n\ndef f():\n    from speechunits.sylber import segment\n    from ..sylber import thresholds\n"
    found = imported_tops(PACKAGE / "slu" / "model.py", source)
    assert found == [(4, "sylber"), (5, "sylber")]
