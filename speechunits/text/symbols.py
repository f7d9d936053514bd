"""Symbols <-> integer ids for a TTS model's embedding table.

Id 0 is padding and id 1 end-of-sequence, so batches pad with 0 and a model always sees where
the text ends; the other symbols follow sorted, so the same corpus always gives the same ids.
The table is stored with the model: a symbol it lacks is an error, never dropped, because a
silently shortened input would be synthesized as different words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from speechunits.errors import ConfigError

PAD = "<pad>"
EOS = "<eos>"


class SymbolTable:
    """``symbols[i]`` is the symbol of id ``i``; ``symbols[:2] == ["<pad>", "<eos>"]``."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if symbols[:2] != [PAD, EOS]:
            raise ConfigError(None, f"a symbol table starts with {PAD!r}, {EOS!r}, got {symbols[:2]!r}")
        bad = [s for s in symbols if not isinstance(s, str) or not s]
        if bad:
            raise ConfigError(None, f"symbols are non-empty strings, got {bad[:5]!r}")
        if len(set(symbols)) != len(symbols):
            dups = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ConfigError(None, f"a symbol table lists each symbol once, these twice or more: {dups!r}")
        self.symbols: list[str] = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> "SymbolTable":
        """The table of every symbol in ``sequences`` (ids 2.. in sorted order)."""
        seen: set[str] = set()
        for seq in sequences:
            seen.update(seq)
        reserved = seen & {PAD, EOS}
        if reserved:
            raise ConfigError(None, f"the symbols {sorted(reserved)!r} are reserved for padding and end of sequence")
        return cls([PAD, EOS, *sorted(seen)])

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolTable) and other.symbols == self.symbols

    def encode(self, symbols: Sequence[str], add_eos: bool = True, text: str | None = None) -> list[int]:
        """Ids of ``symbols`` (+ eos); ConfigError naming an unknown symbol and the text
        (``text`` when given, else the symbols joined)."""
        try:
            ids = [self._ids[s] for s in symbols]
        except KeyError as err:
            unknown = sorted({s for s in symbols if s not in self._ids})
            shown = text if text is not None else "".join(symbols)
            raise ConfigError(None, f"symbol(s) {unknown!r} not in the model's symbol table ({len(self)} symbols), "
                                    f"in {shown!r}") from err
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids``, padding and end of sequence left out."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise ConfigError(None, f"symbol id {i} outside the table (0..{len(self.symbols) - 1})")
            if i not in (self.pad_id, self.eos_id):
                out.append(self.symbols[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SymbolTable":
        if not isinstance(d, dict) or not isinstance(d.get("symbols"), list):
            raise ConfigError(None, f"a symbol table dict is {{'symbols': [...]}}, got {str(d)[:200]}")
        return cls(d["symbols"])
