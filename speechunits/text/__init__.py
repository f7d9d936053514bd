"""The TTS text front end: text -> phoneme (espeak-ng) or character symbols -> ids (docs/text.md)."""

from speechunits.text.frontend import KINDS, TextFrontend
from speechunits.text.normalize import PHRASE_MARKS, normalize_text
from speechunits.text.symbol_file import bad_path, meta_path, read_symbols, write_symbols
from speechunits.text.symbols import EOS, PAD, SymbolTable

__all__ = ["EOS", "KINDS", "PAD", "PHRASE_MARKS", "SymbolTable", "TextFrontend", "bad_path", "meta_path",
           "normalize_text", "read_symbols", "write_symbols"]
