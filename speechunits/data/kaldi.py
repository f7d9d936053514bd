"""Kaldi data directories: ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur`` ...

Files written and read (one ``<utt-id> <value>`` line each, sorted by id in C-locale order):

- ``wav.scp``: audio path or pipe command (required). Relative paths are resolved against
  the current directory when reading (the Kaldi convention) and returned absolute.
- ``text``: transcript, kept exactly (inner and repeated spaces included).
- ``utt2spk`` / ``spk2utt``: speaker; an utterance without one gets its own id as speaker
  when written (Kaldi requires a speaker for every utterance).
- ``utt2dur`` (seconds), ``utt2num_samples``, ``utt2sample_rate``: optional, may cover a
  subset of utterances.
- ``utt2<key>``: any other file of that form holds the string label ``Utterance.extra[key]``
  (for example ``utt2intent``).

:func:`write_kaldi_dir` builds the whole directory in a hidden temporary directory beside
the target and swaps it in with renames, so a failed write never leaves a half-written
directory under the target name. :func:`read_kaldi_dir` validates like Kaldi's
``validate_data_dir.sh`` and raises :class:`ManifestError` with ``file:line``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError
from speechunits.io_utils import default_mode, remove_stale_temporaries, temporary_prefix
from speechunits.killpoints import kill_point

PathLike = str | os.PathLike[str]

_TYPED_FILES = {"utt2dur": "duration", "utt2num_samples": "num_samples", "utt2sample_rate": "sample_rate"}
_RESERVED_UTT2 = {"utt2spk", *_TYPED_FILES}
_UNSUPPORTED = ("segments",)
_LINE = re.compile(r"^(\S+)(?:[ \t](.*))?$")
_EXTRA_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


# ----------------------------------------------------------------------------- writing


def _check_token(out: Path, value: str, what: str, utt_id: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ManifestError(
            out, f"utterance {utt_id!r}: {what} must be a non-empty string without whitespace, found {value!r}"
        )


def _check_value(out: Path, value: str, what: str, utt_id: str) -> None:
    if "\n" in value or "\r" in value:
        raise ManifestError(out, f"utterance {utt_id!r}: {what} contains a line break, which a Kaldi file cannot hold")


def _kaldi_lines(utts: Sequence[Utterance], out: Path) -> dict[str, list[str]]:
    """Build the lines of every file of the data dir (utterances already sorted)."""
    files: dict[str, list[str]] = {"wav.scp": [], "utt2spk": []}
    spk2utt: dict[str, list[str]] = {}
    has_text = any(u.text is not None for u in utts)
    for u in utts:
        _check_token(out, u.id, "the id", u.id)
        _check_value(out, u.audio, "the audio path", u.id)
        if not u.audio.strip():
            raise ManifestError(out, f"utterance {u.id!r}: empty audio path")
        files["wav.scp"].append(f"{u.id} {u.audio}")
        if has_text:
            if u.text is None:
                raise ManifestError(
                    out, f"utterance {u.id!r} has no text while others have one: a Kaldi text file must cover all"
                )
            _check_value(out, u.text, "the text", u.id)
            files.setdefault("text", []).append(f"{u.id} {u.text}")
        speaker = u.speaker if u.speaker is not None else u.id
        _check_token(out, speaker, "the speaker", u.id)
        files["utt2spk"].append(f"{u.id} {speaker}")
        spk2utt.setdefault(speaker, []).append(u.id)
        for name, attr in _TYPED_FILES.items():
            value = getattr(u, attr)
            if value is not None:
                shown = repr(float(value)) if attr == "duration" else str(int(value))
                files.setdefault(name, []).append(f"{u.id} {shown}")
        for key, value in u.extra.items():
            if not _EXTRA_KEY.match(key) or f"utt2{key}" in _RESERVED_UTT2:
                raise ManifestError(out, f"utterance {u.id!r}: extra key {key!r} cannot name a Kaldi utt2<key> file")
            if not isinstance(value, str):
                raise ManifestError(
                    out,
                    f"utterance {u.id!r}: extra[{key!r}] is {type(value).__name__}; Kaldi utt2<key> files hold "
                    "only string labels (keep such data in a JSONL manifest)",
                )
            _check_value(out, value, f"extra[{key!r}]", u.id)
            files.setdefault(f"utt2{key}", []).append(f"{u.id} {value}")
    files["spk2utt"] = [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())]
    return files


def write_kaldi_dir(utts: Sequence[Utterance], out_dir: PathLike) -> None:
    """Write ``utts`` as a Kaldi data dir at ``out_dir`` (replacing it as a whole, atomically).

    Utterances are sorted by id (C-locale order); duplicate ids raise ManifestError.
    """
    out = Path(out_dir)
    ordered = sorted(utts, key=lambda u: u.id)
    for prev, cur in zip(ordered, ordered[1:]):
        if prev.id == cur.id:
            raise ManifestError(out, f"duplicate utterance id {cur.id!r}")
    files = _kaldi_lines(ordered, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out, (".tmp", ".old"))  # a killed writer's, so a rerun leaves none behind
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(out), suffix=".tmp", dir=out.parent))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp's 0700 would stay with the renamed dir
    try:
        for name, lines in files.items():
            with open(tmp / name, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(line + "\n" for line in lines)
                f.flush()
                os.fsync(f.fileno())
        kill_point("atomic-write", out.name)  # the temporary directory complete, not yet in place
        _swap_in(tmp, out)
        kill_point("atomic-renamed", out.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; an existing ``out`` is moved aside first, then removed."""
    if out.exists() and not out.is_dir():
        raise ManifestError(out, "expected a Kaldi data directory path, found an existing file")
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=temporary_prefix(out), suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        kill_point("kaldi-dir-moved-aside", out.name)  # no directory under the final name
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- reading


def _read_table(path: Path, *, need_value: bool = True) -> dict[str, tuple[str, int]]:
    """Read ``<id> <value>`` lines: id -> (value, line number); ids must be sorted and unique."""
    table: dict[str, tuple[str, int]] = {}
    prev: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(path, f"expected UTF-8 text ({err})") from err
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines, start=1):
        m = _LINE.match(raw)
        if m is None:
            raise ManifestError(path, f"malformed line: expected '<utt-id> <value>', found {raw!r}", lineno)
        key, value = m.group(1), m.group(2)
        if need_value and (value is None or not value.strip()):
            raise ManifestError(path, f"malformed line: expected '<utt-id> <value>', found only {key!r}", lineno)
        if prev is not None and key <= prev:
            problem = f"duplicate id {key!r}" if key == prev else f"ids not sorted (C locale): {key!r} after {prev!r}"
            raise ManifestError(path, problem, lineno)
        table[key] = (value if value is not None else "", lineno)
        prev = key
    return table


def _check_known_ids(path: Path, table: dict[str, tuple[str, int]], known: dict[str, Any]) -> None:
    for key, (_value, lineno) in table.items():
        if key not in known:
            raise ManifestError(path, f"utterance id {key!r} is not in wav.scp", lineno)


def _parse_number(path: Path, key: str, value: str, lineno: int, kind: Callable[[str], Any]) -> Any:
    try:
        number = kind(value.strip())
    except ValueError:
        raise ManifestError(path, f"utterance {key!r}: expected a {kind.__name__}, found {value!r}", lineno) from None
    if not 0 <= number < 2**63 or not math.isfinite(number):  # 64 bits, as a JSONL manifest's lengths
        raise ManifestError(path, f"utterance {key!r}: expected a non-negative number below 2**63, found {value!r}",
                            lineno)
    return number


def _check_spk2utt(path: Path, utt2spk: dict[str, str]) -> None:
    """spk2utt must list exactly the utt2spk mapping."""
    seen: dict[str, str] = {}
    prev: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(path, f"expected UTF-8 text ({err})") from err
    lines = text.split("\n")  # line numbers as in _read_table (not str.splitlines, which splits at \r, \x1c ...)
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines, start=1):
        fields = raw.split()
        if len(fields) < 2:
            raise ManifestError(path, f"malformed line: expected '<spk> <utt1> [<utt2> ...]', found {raw!r}", lineno)
        spk = fields[0]
        if prev is not None and spk <= prev:
            raise ManifestError(path, f"speakers not sorted or duplicated: {spk!r} after {prev!r}", lineno)
        prev = spk
        for utt in fields[1:]:
            if utt2spk.get(utt) != spk:
                found = "missing from utt2spk" if utt not in utt2spk else f"assigned to {utt2spk[utt]!r} in utt2spk"
                raise ManifestError(path, f"utterance {utt!r} listed under speaker {spk!r} but {found}", lineno)
            if utt in seen:
                raise ManifestError(path, f"utterance {utt!r} listed twice", lineno)
            seen[utt] = spk
    missing = sorted(set(utt2spk) - set(seen))
    if missing:
        raise ManifestError(path, f"{len(missing)} utterances of utt2spk are not listed, first {missing[0]!r}")


def _resolve_audio(value: str, audio_root: Path | None) -> str:
    if value.rstrip().endswith("|") or os.path.isabs(value):
        return value
    return str((audio_root / value) if audio_root is not None else Path(value).absolute())


def read_kaldi_dir(data_dir: PathLike, *, require_text: bool = True, audio_root: PathLike | None = None) -> list[Utterance]:
    """Read and validate a Kaldi data dir into utterances sorted by id.

    With ``require_text`` (default), an existing ``text`` file must hold a line for every
    utterance of ``wav.scp``; without it, missing transcripts become ``None``. Relative
    ``wav.scp`` paths resolve against ``audio_root`` when given (a corpus that ships its data
    dirs with paths relative to its own root), else against the current directory (Kaldi).
    """
    root = Path(data_dir)
    if not root.is_dir():
        found = "a file" if root.exists() else "nothing"
        raise ManifestError(root, f"expected a Kaldi data directory, found {found}")
    wav_scp = root / "wav.scp"
    if not wav_scp.is_file():
        raise ManifestError(wav_scp, "missing: every Kaldi data dir needs a wav.scp")
    for name in _UNSUPPORTED:
        if (root / name).exists():
            raise ManifestError(root / name, "Kaldi 'segments' (sub-recording utterances) are not supported")
    wavs = _read_table(wav_scp)
    if not wavs:
        raise ManifestError(wav_scp, "no utterances (file is empty)")
    base = None if audio_root is None else Path(audio_root).absolute()
    utts = {key: Utterance(id=key, audio=_resolve_audio(value, base)) for key, (value, _n) in wavs.items()}

    text_path = root / "text"
    if text_path.is_file():
        texts = _read_table(text_path, need_value=False)
        _check_known_ids(text_path, texts, utts)
        for key, (value, _n) in texts.items():
            utts[key].text = value
        if require_text:
            for key in utts:
                if key not in texts:
                    raise ManifestError(text_path, f"no transcript for utterance {key!r} (present in wav.scp)")

    spk_path = root / "utt2spk"
    if spk_path.is_file():
        spks = _read_table(spk_path)
        _check_known_ids(spk_path, spks, utts)
        for key, (value, lineno) in spks.items():
            if len(value.split()) != 1:
                raise ManifestError(spk_path, f"malformed line: expected '<utt-id> <speaker>', found {value!r}", lineno)
            utts[key].speaker = value.strip()
        missing = [key for key in utts if key not in spks]
        if missing:
            raise ManifestError(spk_path, f"no speaker for utterance {missing[0]!r} (present in wav.scp)")
        if (root / "spk2utt").is_file():
            _check_spk2utt(root / "spk2utt", {k: v for k, (v, _n) in spks.items()})

    for name, attr in _TYPED_FILES.items():
        path = root / name
        if path.is_file():
            table = _read_table(path)
            _check_known_ids(path, table, utts)
            kind: Callable[[str], Any] = float if attr == "duration" else int
            for key, (value, lineno) in table.items():
                setattr(utts[key], attr, _parse_number(path, key, value, lineno, kind))

    for path in sorted(root.glob("utt2*")):
        if path.name in _RESERVED_UTT2 or not path.is_file() or path.name.startswith("."):
            continue
        key_name = path.name[len("utt2") :]
        table = _read_table(path, need_value=False)
        _check_known_ids(path, table, utts)
        for key, (value, _n) in table.items():
            utts[key].extra[key_name] = value
    return [utts[key] for key in sorted(utts)]
