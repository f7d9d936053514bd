"""The TTS text front end (speechunits.text): real espeak-ng phonemes with word boundaries and
phrase marks, characters, the symbol table, the symbols file and the ``phonemize`` verb."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from speechunits.cli import main
from speechunits.data.jsonl import write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError, ExternalToolError, ManifestError
from speechunits.text import (EOS, PAD, PHRASE_MARKS, SymbolTable, TextFrontend, bad_path, meta_path,
                              normalize_text, read_symbols)
from speechunits.text import espeak as espeak_module


def words_and_marks(symbols: list[str]) -> list[str]:
    """Symbols -> each word's phonemes joined, and each mark, in order."""
    out: list[str] = []
    word = ""
    for s in symbols + [" "]:
        if s == " " or s in PHRASE_MARKS:
            if word:
                out.append(word)
            word = ""
            if s != " ":
                out.append(s)
        else:
            word += s
    return out


# --- normalisation and characters -----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Hello, world.", "hello, world."),
    ('  "Mr. Smith"  paid 1,000 -- at 10:30!! Really?!', "mister smith paid 1,000 at 10:30! really?"),
    ("...Wait... what", "wait. what"),
    ("'Tis the boys' toys, don\u2019t they?", "tis the boys toys, don't they?"),
    ("It is 3.5 km; (roughly)\n\tfar :", "it is 3.5 km; roughly far:"),
    ("Caf\u00e9 NA\u00cfVE", "caf\u00e9 na\u00efve"),
    ("Dr.Who", "doctor who"),
    ("?!", ""),
])
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_characters_frontend_keeps_boundaries_and_marks() -> None:
    fe = TextFrontend(kind="characters")
    assert fe("Hello,   World!") == list("hello, world!")
    assert fe.batch(["A b.", "C?"]) == [["a", " ", "b", "."], ["c", "?"]]
    assert TextFrontend.from_dict(fe.to_dict()).to_dict() == {"kind": "characters", "language": "en-us"}


@pytest.mark.parametrize("text", [None, "", "   ", "... ?!"])
def test_empty_text_is_a_value_error_naming_the_utterance(text: str | None) -> None:
    with pytest.raises(ValueError, match="utt7"):
        TextFrontend(kind="characters")(text, utt_id="utt7")


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="phonemes, characters"):
        TextFrontend(kind="graphemes")


# --- espeak-ng phonemes ---------------------------------------------------------------------

@pytest.mark.espeak
def test_phonemes_keep_word_boundaries_and_phrase_marks() -> None:
    symbols = TextFrontend()("Hello, world. How are you?")
    assert words_and_marks(symbols) == ["həlˈoʊ", ",", "wˈɜːld", ".", "hˈaʊ", "ɑːɹ", "juː", "?"]
    assert symbols[:4] == ["h", "ə", "l", "ˈoʊ"]  # stress stays on its vowel, the diphthong whole
    assert symbols[4:6] == [",", " "] and symbols[0] != " " and symbols[-1] == "?"
    assert all(s == " " or not any(c.isspace() for c in s) for s in symbols)


@pytest.mark.espeak
def test_phonemes_keep_affricates_whole_and_numbers_unbroken() -> None:
    fe = TextFrontend()
    assert {"tʃ", "dʒ"} <= set(fe("church judge"))
    symbols = fe("It cost 1,000 dollars, at 10:30.")
    assert [s for s in symbols if s in PHRASE_MARKS] == [",", "."]  # the marks inside numbers are read
    assert "θˈaʊzənd" in words_and_marks(symbols)


@pytest.mark.espeak
def test_batch_matches_single_calls_through_long_and_sentinel_like_phrases() -> None:
    """A long clause (espeak-ng splits its output line), a text that reads like the separating
    sentinel, and one espeak-ng prints nothing for must not shift any other text's phonemes."""
    fe = TextFrontend(workers=2)
    long_text = " ".join(["the quick brown fox jumps over a lazy dog"] * 20)
    texts = ["Hello, world.", "Good night!", "Is it 3.5?", "Why?"] * 80
    texts[1] = texts[-3] = long_text
    texts[2] = texts[-2] = espeak_module.SENTINEL  # one in the first piece of phrases, one in the last
    out = fe.batch(texts)
    assert len(out) == len(texts) and len(texts) > espeak_module.PIECE_PHRASES
    assert out[:4] == [fe(t) for t in texts[:4]]
    assert out[2] == fe("qqxqq") and len(out[2]) > 3
    assert out[4:8] == [out[0], fe("Good night!"), fe("Is it 3.5?"), out[3]]
    assert out[-4:] == out[:4]  # a piece in another process agrees
    assert len(words_and_marks(out[1])) == 180
    assert words_and_marks(out[0]) == ["həlˈoʊ", ",", "wˈɜːld", "."]


@pytest.mark.espeak
def test_phoneme_frontend_dict_round_trip_and_version_warning() -> None:
    fe = TextFrontend(language="en-us")
    d = fe.to_dict()
    assert d["kind"] == "phonemes" and d["language"] == "en-us" and d["espeak_version"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TextFrontend.from_dict(d)("yes") == fe("yes")
    with pytest.warns(UserWarning, match="espeak-ng 0.1"):
        TextFrontend.from_dict({**d, "espeak_version": "0.1"})


@pytest.mark.espeak
def test_unknown_language_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'xx-nowhere'.*espeak-ng --voices"):
        TextFrontend(language="xx-nowhere")


def test_missing_espeak_names_the_package_and_the_characters_frontend(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(ExternalToolError, match="Debian package espeak-ng.*--frontend characters"):
        TextFrontend(kind="phonemes")
    data = tmp_path / "data"
    write_jsonl_manifest([Utterance(id="a", audio="a.wav", text="hi")], data / "manifest.jsonl")
    assert main(["phonemize", "--data", str(data), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "--frontend characters" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


# --- symbol table ----------------------------------------------------------------------------

def test_symbol_table_round_trip() -> None:
    seqs = [["h", "ə", " ", "l", ","], ["ˈoʊ", "h", "?"]]
    table = SymbolTable.build(seqs)
    assert table.symbols[:2] == [PAD, EOS] and (table.pad_id, table.eos_id) == (0, 1)
    assert table.symbols[2:] == sorted({s for seq in seqs for s in seq}) and len(table) == 9
    for seq in seqs:
        ids = table.encode(seq)
        assert ids[-1] == table.eos_id and 0 not in ids and len(ids) == len(seq) + 1
        assert table.decode(ids) == seq
        assert table.encode(seq, add_eos=False) == ids[:-1]
    again = SymbolTable.from_dict(json.loads(json.dumps(table.to_dict(), ensure_ascii=False)))
    assert again == table and again.encode(seqs[1]) == table.encode(seqs[1])


def test_symbol_table_errors() -> None:
    table = SymbolTable.build([["a", "b"]])
    with pytest.raises(ConfigError, match=r"\['z'\].*'abz'"):
        table.encode(["a", "b", "z"])
    with pytest.raises(ConfigError, match="'the text'"):
        table.encode(["q"], text="the text")
    with pytest.raises(ConfigError, match="outside the table"):
        table.decode([0, 4])
    with pytest.raises(ConfigError, match="reserved"):
        SymbolTable.build([["a", EOS]])
    with pytest.raises(ConfigError, match="starts with"):
        SymbolTable.from_dict({"symbols": ["a", PAD, EOS]})
    with pytest.raises(ConfigError, match="twice"):
        SymbolTable.from_dict({"symbols": [PAD, EOS, "a", "a"]})


# --- the symbols file and the phonemize verb -------------------------------------------------

def make_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    utts = [Utterance(id="u3", audio="u3.wav", text="How are you? Fine."),
            Utterance(id="u1", audio="u1.wav", text="Hello, world."),
            Utterance(id="u2", audio="u2.wav")]  # no transcript
    write_jsonl_manifest(utts, data / "manifest.jsonl")
    return data


def run_phonemize(tmp_path: Path, frontend: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    out = tmp_path / f"{frontend}.jsonl"
    rc = main(["phonemize", "--data", str(make_data(tmp_path)), "--out", str(out), "--frontend", frontend])
    assert rc == 0
    return out, capsys.readouterr().err


def check_outputs(out: Path, fe: TextFrontend, err: str) -> None:
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["u1", "u3"]
    assert rows[0]["text"] == "Hello, world." and rows[0]["symbols"] == fe("Hello, world.")
    assert read_symbols(out) == {r["id"]: r["symbols"] for r in rows}
    assert bad_path(out).read_text() == "u2\tno text to convert (empty or missing transcript)\n"
    assert "u2" in err
    meta = json.loads(meta_path(out).read_text())
    assert meta["frontend"] == fe.to_dict() and (meta["count"], meta["bad"]) == (2, 1)
    assert meta["inventory"] == sorted({s for r in rows for s in r["symbols"]})


def test_phonemize_cli_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_phonemize(tmp_path, "characters", capsys)
    check_outputs(out, TextFrontend(kind="characters"), err)


@pytest.mark.espeak
def test_phonemize_cli_phonemes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_phonemize(tmp_path, "phonemes", capsys)
    check_outputs(out, TextFrontend(), err)
    assert "ˈoʊ" in read_symbols(out)["u1"]


def test_phonemize_out_must_be_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["phonemize", "--data", str(make_data(tmp_path)), "--out", str(tmp_path / "p.txt"),
               "--frontend", "characters"])
    assert rc == 2 and "*.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("line, problem", [
    ('{"id": "b", "symbols": ["a"', "invalid JSON"),
    ('{"id": "b", "text": "x"}', "'symbols'"),
    ('{"id": "b", "symbols": ["a", ""]}', "non-empty strings"),
    ('["b"]', "JSON object"),
    ('{"id": "a", "symbols": ["a"]}', "duplicate id 'a'"),
])
def test_read_symbols_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "a", "symbols": ["a"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=problem) as info:
        read_symbols(path)
    assert str(info.value).startswith(f"{path}:2: ")
