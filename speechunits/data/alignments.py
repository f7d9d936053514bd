"""Time alignments: Praat TextGrid (long and short text formats) and CTM files.

A tier is a list of :class:`Interval` (seconds, label). Tier names used across speechunits
are ``"words"``, ``"syllables"`` and ``"phones"`` (MFA writes ``words``/``phones``).
Labels in :data:`SILENCE_LABELS` mean silence to every consumer.

Reading is strict where it matters: a truncated file, an unknown tier class, and, in the
tiers that are read, intervals that overlap or leave gaps or have ``xmin > xmax`` raise
:class:`speechunits.errors.AlignmentError` naming the file and line. ``read_textgrid(path,
tiers=[...])`` validates only the tiers asked for: the others are parsed past but not
checked, so an irregular tier of another tool (an EMU export's phoneme tier with
overlapping intervals, say) does not block reading a well-formed syllable tier. Writing is
atomic and fills gaps with empty-label intervals so that Praat and MFA accept the result.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechunits.errors import AlignmentError
from speechunits.io_utils import atomic_write_bytes, atomic_write_text

PathLike = str | os.PathLike[str]

SILENCE_LABELS: frozenset[str] = frozenset({"", "sil", "sp", "spn", "pau", "<sil>", "<eps>", "#", "h#"})
"""Labels that mean silence or non-speech to every consumer (compare after ``strip().lower()``):
Festival's ``pau``, Kaldi/MFA's ``sil``/``sp``/``spn`` (spoken noise) and ``<eps>``, TIMIT's
``h#``, ``#`` and ``<sil>`` of other aligners."""

TOLERANCE = 1e-6
"""Seconds two boundaries may differ by and still count as the same (rounded writers)."""


@dataclass(frozen=True)
class Interval:
    """One labelled span ``[start, end)`` in seconds."""

    start: float
    end: float
    label: str


def is_silence(label: str) -> bool:
    """True for labels in :data:`SILENCE_LABELS` (case- and whitespace-insensitive)."""
    return label.strip().lower() in SILENCE_LABELS


# --------------------------------------------------------------------------- TextGrid reading

_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'  # Praat string; "" is an escaped quote
    r"|(?P<flag><exists>|<absent>)"
    r"|(?P<index>\[\s*\d*\s*\]:?)"  # item [1]: / intervals [3]:
    r"|(?P<comment>![^\n]*)"  # short-format comments
    r"|(?P<ident>[A-Za-z_][A-Za-z_0-9?]*)"  # labels of the long format: xmin, tiers?, size ...
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<ws>\s+|[=:])"
    r"|(?P<bad>.)",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "str" | "num" | "flag"
    value: str
    line: int


class _Tokens:
    """The value tokens of a Praat text file (labels, indices and comments dropped)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        newlines = [m.start() for m in re.finditer("\n", text)]
        self.toks: list[_Tok] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            line = bisect.bisect_left(newlines, m.start()) + 1
            if kind == "str":
                self.toks.append(_Tok("str", m.group("str").replace('""', '"'), line))
            elif kind in ("num", "flag"):
                self.toks.append(_Tok(kind, m.group(kind), line))
            elif kind == "bad":
                raise AlignmentError(path, f"unexpected character {m.group()!r} in a TextGrid", line)
        self.pos = 0
        self.last_line = len(newlines) + 1

    def next(self, kind: str, what: str) -> _Tok:
        if self.pos >= len(self.toks):
            raise AlignmentError(self.path, f"file is truncated: expected {what}, found the end of the file", self.last_line)
        tok = self.toks[self.pos]
        if tok.kind != kind:
            raise AlignmentError(self.path, f"expected {what}, found {tok.value!r}", tok.line)
        self.pos += 1
        return tok

    def number(self, what: str) -> tuple[float, int]:
        tok = self.next("num", what)
        value = float(tok.value)
        if not math.isfinite(value):  # digits beyond the float range parse as infinity
            shown = tok.value if len(tok.value) <= 24 else tok.value[:20] + "..."
            raise AlignmentError(self.path, f"expected a finite number for {what}, found {shown}", tok.line)
        return value, tok.line

    def count(self, what: str) -> tuple[int, int]:
        value, line = self.number(what)
        if value != int(value) or value < 0:
            raise AlignmentError(self.path, f"expected a non-negative integer {what}, found {value}", line)
        return int(value), line

    def string(self, what: str) -> _Tok:
        return self.next("str", what)


def _decode(path: Path, data: bytes) -> str:
    """TextGrid bytes -> text: UTF-16 (with BOM, or BOM-less with NULs), UTF-8 (optional BOM)."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        if len(data) >= 2 and data[0] == 0 and data[1] != 0:
            return data.decode("utf-16-be")
        if len(data) >= 2 and data[0] != 0 and data[1] == 0:
            return data.decode("utf-16-le")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AlignmentError(path, f"cannot decode the file as UTF-8 or UTF-16 ({err.reason} at byte {err.start})") from err


def _check_span(path: Path, start: float, end: float, what: str, line: int) -> None:
    if start > end:
        raise AlignmentError(path, f"{what} has xmin {start} > xmax {end}", line)


def _read_interval_tier(toks: _Tokens, name: str, tier_min: float, tier_max: float) -> list[Interval]:
    path = toks.path
    n, _ = toks.count(f"the number of intervals of tier {name!r}")
    out: list[Interval] = []
    prev_end = tier_min
    for i in range(n):
        start, line = toks.number(f"xmin of interval {i + 1} of tier {name!r}")
        end, _ = toks.number(f"xmax of interval {i + 1} of tier {name!r}")
        label = toks.string(f"the text of interval {i + 1} of tier {name!r}").value
        _check_span(path, start, end, f"interval {i + 1} of tier {name!r}", line)
        if abs(start - prev_end) > TOLERANCE:
            problem = "overlaps the previous one" if start < prev_end else "leaves a gap after the previous one"
            where = "tier start" if i == 0 else f"previous end {prev_end}"
            raise AlignmentError(
                path, f"interval {i + 1} of tier {name!r} starts at {start}: it {problem} ({where}); "
                "intervals must be contiguous", line
            )
        out.append(Interval(start, end, label))
        prev_end = end
    if n and abs(prev_end - tier_max) > TOLERANCE:
        raise AlignmentError(path, f"tier {name!r} intervals end at {prev_end}, the tier at {tier_max}", toks.last_line)
    return out


def _skip_interval_tier(toks: _Tokens, name: str) -> None:
    """Parse past an interval tier that is not read: its values are consumed, never checked."""
    n, _ = toks.count(f"the number of intervals of tier {name!r}")
    for i in range(n):
        toks.number(f"xmin of interval {i + 1} of tier {name!r}")
        toks.number(f"xmax of interval {i + 1} of tier {name!r}")
        toks.string(f"the text of interval {i + 1} of tier {name!r}")


def _skip_text_tier(toks: _Tokens, name: str) -> None:
    n, _ = toks.count(f"the number of points of tier {name!r}")
    for i in range(n):
        toks.number(f"time of point {i + 1} of tier {name!r}")
        toks.string(f"the mark of point {i + 1} of tier {name!r}")


def read_textgrid(
    path: PathLike, tiers: Collection[str] | None = None, *, required: bool = True
) -> dict[str, list[Interval]]:
    """IntervalTiers of a Praat TextGrid (long or short text format) by tier name.

    ``tiers=None`` reads and checks every tier; point tiers (``TextTier``) are checked and
    left out of the result. With ``tiers``, only those interval tiers are checked and
    returned (in file order); every other tier is parsed past without checks. A requested
    tier that is duplicated or a point tier is an error, and so is a missing one unless
    ``required=False`` (then it is just absent from the result). Raises AlignmentError
    (with file and line) for malformed files.
    """
    p = Path(path)
    wanted = None if tiers is None else set(tiers)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise AlignmentError(p, f"cannot read TextGrid ({err.strerror or err})") from err
    toks = _Tokens(p, _decode(p, data))
    if toks.string('File type = "ooTextFile"').value != "ooTextFile":
        raise AlignmentError(p, "not a Praat text file: expected File type = \"ooTextFile\"", 1)
    cls = toks.string('Object class = "TextGrid"')
    if cls.value != "TextGrid":
        raise AlignmentError(p, f"expected Object class = \"TextGrid\", found {cls.value!r}", cls.line)
    xmin, line = toks.number("the TextGrid xmin")
    xmax, _ = toks.number("the TextGrid xmax")
    _check_span(p, xmin, xmax, "the TextGrid", line)
    flag = toks.next("flag", "tiers? <exists> or <absent>")
    size = 0 if flag.value == "<absent>" else toks.count("the number of tiers")[0]
    out: dict[str, list[Interval]] = {}
    found: list[str] = []
    for t in range(size):
        kind = toks.string(f'the class of tier {t + 1} ("IntervalTier" or "TextTier")')
        name = toks.string(f"the name of tier {t + 1}").value
        found.append(name)
        checked = wanted is None or name in wanted
        tmin, tline = toks.number(f"xmin of tier {name!r}")
        tmax, _ = toks.number(f"xmax of tier {name!r}")
        if checked:
            _check_span(p, tmin, tmax, f"tier {name!r}", tline)
        if kind.value == "IntervalTier":
            if not checked:
                _skip_interval_tier(toks, name)
                continue
            if name in out:
                raise AlignmentError(p, f"duplicate tier name {name!r}", kind.line)
            out[name] = _read_interval_tier(toks, name, tmin, tmax)
        elif kind.value == "TextTier":
            if wanted is not None and name in wanted:
                raise AlignmentError(p, f"tier {name!r} is a point tier (TextTier), not an interval tier", kind.line)
            _skip_text_tier(toks, name)
        else:
            raise AlignmentError(
                p, f"unknown tier class {kind.value!r}: expected \"IntervalTier\" or \"TextTier\"", kind.line
            )
    missing = sorted((wanted or set()) - set(out))
    if missing and required:
        raise AlignmentError(p, f"no tier named {', '.join(map(repr, missing))}; tiers found: {found}")
    return out


# --------------------------------------------------------------------------- reference syllables


def textgrid_syllables(path: PathLike, tier: str = "syllables",
                       skip_labels: Iterable[str] = SILENCE_LABELS) -> list[Interval]:
    """The non-silence intervals of one TextGrid tier: the reference syllables of an utterance.

    Only that tier has to be well formed (see :func:`read_textgrid`)."""
    intervals = read_textgrid(path, tiers=[tier])[tier]
    skip = {s.strip().lower() for s in skip_labels}
    return [iv for iv in intervals if iv.label.strip().lower() not in skip]


def textgrid_syllable_spans(path: PathLike, tier: str = "syllables",
                            skip_labels: Iterable[str] = SILENCE_LABELS) -> tuple[list[Interval], np.ndarray]:
    """:func:`textgrid_syllables` and their (N, 2) float64 ``[start, end)`` seconds."""
    sylls = textgrid_syllables(path, tier, skip_labels)
    return sylls, np.asarray([(iv.start, iv.end) for iv in sylls], dtype=np.float64).reshape(-1, 2)


def seconds_to_frames(intervals: np.ndarray, frame_rate: float) -> np.ndarray:
    """(N, 2) seconds -> (M, 2) int64 ``[start, end)`` frames (nearest frame edge); spans that
    collapse to zero frames are dropped."""
    arr = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    frames = np.rint(arr * frame_rate).astype(np.int64)
    return frames[frames[:, 1] > frames[:, 0]]


# --------------------------------------------------------------------------- TextGrid writing


def _fmt(x: float) -> str:
    """Shortest round-trip text of a float, without a trailing ``.0``."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def _filled(path: Path, name: str, intervals: Sequence[Interval], xmax: float) -> list[Interval]:
    """Sorted intervals with gaps (including before the first and after the last) filled by ``""``."""
    out: list[Interval] = []
    t = 0.0
    for iv in sorted(intervals, key=lambda iv: (iv.start, iv.end)):
        if iv.start < 0 or iv.end < iv.start:
            raise AlignmentError(path, f"tier {name!r}: invalid interval {iv}")
        if iv.start < t - TOLERANCE:
            raise AlignmentError(path, f"tier {name!r}: interval {iv} overlaps the previous one (ends at {t})")
        if iv.end - iv.start <= 0:
            continue  # zero-length intervals are not valid in Praat
        start = max(iv.start, t)
        if start > t:
            out.append(Interval(t, start, ""))
        out.append(Interval(start, iv.end, iv.label))
        t = iv.end
    if xmax > t:
        out.append(Interval(t, xmax, ""))
    return out


def format_textgrid(tiers: Mapping[str, Sequence[Interval]], xmax: float | None = None, path: PathLike = "<textgrid>") -> str:
    """The long ("ooTextFile") text of a TextGrid with the given interval tiers."""
    p = Path(path)
    last = max((iv.end for ivs in tiers.values() for iv in ivs), default=0.0)
    if xmax is None:
        xmax = last
    elif xmax < last - TOLERANCE:
        raise AlignmentError(p, f"xmax {xmax} is before the last interval end {last}")
    xmax = max(xmax, last)
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {_fmt(xmax)} ",
        "tiers? <exists> " if tiers else "tiers? <absent> ",
    ]
    if tiers:
        lines += [f"size = {len(tiers)} ", "item []: "]
    for t, (name, ivs) in enumerate(tiers.items(), start=1):
        filled = _filled(p, name, ivs, xmax)
        lines += [
            f"    item [{t}]:",
            '        class = "IntervalTier" ',
            f"        name = {_quote(name)} ",
            "        xmin = 0 ",
            f"        xmax = {_fmt(xmax)} ",
            f"        intervals: size = {len(filled)} ",
        ]
        for i, iv in enumerate(filled, start=1):
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {_fmt(iv.start)} ",
                f"            xmax = {_fmt(iv.end)} ",
                f"            text = {_quote(iv.label)} ",
            ]
    return "\n".join(lines) + "\n"


def write_textgrid(path: PathLike, tiers: Mapping[str, Sequence[Interval]], xmax: float | None = None) -> None:
    """Write interval tiers as a long-format UTF-8 TextGrid, atomically.

    ``xmax`` (default: the last interval end) is the end of the grid; gaps are filled with
    empty-label intervals and zero-length intervals are dropped. Overlapping intervals
    within a tier raise AlignmentError.
    """
    atomic_write_text(path, format_textgrid(tiers, xmax, path))


# --------------------------------------------------------------------------- CTM


def read_ctm(path: PathLike) -> dict[str, list[Interval]]:
    """``utt channel start dur label [conf]`` lines -> {utt: intervals sorted by start}.

    Empty lines and ``;;`` comments are skipped. Raises AlignmentError for malformed lines.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AlignmentError(p, f"cannot read CTM file ({err})") from err
    out: dict[str, list[Interval]] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):  # not splitlines(): \f, \u2028 are no line ends
        line = raw.strip()
        if not line or line.startswith(";;"):
            continue
        fields = line.split()
        if len(fields) not in (5, 6):
            raise AlignmentError(p, f"expected 'utt channel start dur label [conf]', found {len(fields)} fields", lineno)
        try:
            start, dur = float(fields[2]), float(fields[3])
            if len(fields) == 6:
                float(fields[5])
        except ValueError as err:
            raise AlignmentError(p, f"expected numeric start/dur/conf, found {line!r}", lineno) from err
        if not (math.isfinite(start) and math.isfinite(dur) and math.isfinite(start + dur)):
            raise AlignmentError(p, f"start and duration must be finite numbers, found {fields[2][:20]!r} "
                                    f"{fields[3][:20]!r}", lineno)
        if start < 0 or dur < 0:
            raise AlignmentError(p, f"negative start or duration in {line!r}", lineno)
        out.setdefault(fields[0], []).append(Interval(start, round(start + dur, 9), fields[4]))
    for ivs in out.values():
        ivs.sort(key=lambda iv: (iv.start, iv.end))
    return out


def _ctm_lines(alignments: Mapping[str, Sequence[Interval]], path: Path) -> Iterator[str]:
    for utt in sorted(alignments):
        if not utt or any(c.isspace() for c in utt):
            raise AlignmentError(path, f"utterance id {utt!r} is empty or contains whitespace")
        for iv in sorted(alignments[utt], key=lambda iv: (iv.start, iv.end)):
            if not iv.label:
                continue
            if any(c.isspace() for c in iv.label):
                raise AlignmentError(path, f"CTM labels cannot contain whitespace: {iv.label!r} in {utt!r}")
            yield f"{utt} 1 {_fmt(round(iv.start, 6))} {_fmt(round(iv.end - iv.start, 6))} {iv.label}\n"


def write_ctm(path: PathLike, alignments: Mapping[str, Sequence[Interval]]) -> None:
    """Write ``utt 1 start dur label`` lines (utterances sorted, empty labels skipped), atomically."""
    p = Path(path)
    atomic_write_bytes(p, "".join(_ctm_lines(alignments, p)).encode("utf-8"))
