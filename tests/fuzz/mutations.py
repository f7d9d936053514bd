"""Shared pieces of the reader fuzz tests (no tests here): :func:`fuzz_settings`, and mutations
of valid text files.

:func:`mutated` draws one corruption of a valid file's bytes: truncation at a random offset,
flipped / inserted / deleted bytes, a dropped or duplicated line, a line whose JSON value
changes type, non-UTF-8 bytes, an empty file, or a generated line.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from speechunits.errors import SpeechUnitsError


def fuzz_settings(max_examples: int, deadline_ms: int, *allow: HealthCheck) -> settings:
    """Repeatable fuzzing for CI: derandomized, no example database, ``max_examples`` cases of
    at most ``deadline_ms`` each; slow generation is allowed, and so are the checks in ``allow``."""
    return settings(max_examples=max_examples, derandomize=True, deadline=deadline_ms, database=None,
                    suppress_health_check=[HealthCheck.too_slow, *allow])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1]) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

OPS = ("truncate", "flip", "insert", "delete", "drop_line", "dup_line", "swap_lines", "retype", "non_utf8", "empty",
       "replace_line", "huge_int", "deep_nesting")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


@st.composite
def mutated(draw: st.DrawFn, valid: bytes, ops: tuple[str, ...] = OPS) -> bytes:
    """One corrupted version of ``valid`` (may, rarely, still be valid)."""
    op = draw(st.sampled_from(ops))
    n = len(valid)
    if op == "truncate":
        return valid[: draw(st.integers(0, max(0, n - 1)))]
    if op == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if op == "insert":
        i = draw(st.integers(0, n))
        return valid[:i] + draw(st.binary(min_size=1, max_size=8)) + valid[i:]
    if op == "delete":
        i = draw(st.integers(0, n - 1))
        return valid[:i] + valid[i + draw(st.integers(1, 16)) :]
    if op == "non_utf8":
        i = draw(st.integers(0, n))
        return valid[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + valid[i:]
    if op == "empty":
        return draw(st.sampled_from([b"", b"\n", b" \n", b"\n\n"]))
    if op == "deep_nesting":
        depth = draw(st.sampled_from([50, 5000, 100_000]))
        return valid + b"[" * depth + b"]" * depth + b"\n"
    lines = _lines(valid)
    body = lines[:-1] if lines and lines[-1] == b"" else lines
    tail = [b""] if len(body) < len(lines) else []
    k = draw(st.integers(0, max(0, len(body) - 1)))
    if op == "drop_line" and body:
        body = body[:k] + body[k + 1 :]
    elif op == "dup_line" and body:
        body = body[: k + 1] + [body[k]] + body[k + 1 :]
    elif op == "swap_lines" and len(body) > 1:
        j = draw(st.integers(0, len(body) - 1))
        body[k], body[j] = body[j], body[k]
    elif op == "replace_line" and body:
        body[k] = draw(st.text(max_size=30)).replace("\n", " ").encode("utf-8", "surrogatepass")
    elif op == "huge_int" and body:
        body[k] = body[k].replace(b"1", b"1" * 5000, 1) if b"1" in body[k] else body[k] + b" " + b"9" * 5000
    elif op == "retype" and body:
        try:
            obj = json.loads(body[k])
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj:
            key = draw(st.sampled_from(sorted(obj)))
            obj[key] = draw(JSON_VALUES)
            body[k] = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
        else:
            body[k] = json.dumps(draw(JSON_VALUES)).encode()
    return b"\n".join(body + tail)


def nonblank_lines(data: bytes) -> int:
    """Lines of ``data`` holding something besides whitespace (what a reader must not drop silently)."""
    return sum(1 for line in data.decode("utf-8").split("\n") if line.strip())


def check_names_file(err: BaseException, inside: Path, error_type: type[SpeechUnitsError]) -> None:
    """``err`` is an ``error_type`` naming a file under ``inside`` (or ``inside`` itself), and its
    line (``path:line:``, 1-based) when it has one: what every reader must raise on bad input."""
    assert isinstance(err, error_type), repr(err)
    assert err.path is not None, err
    assert str(err.path).startswith(str(inside)), err
    assert str(err.path) in str(err), err
    if err.line is not None:
        assert f"{err.path}:{err.line}:" in str(err) and err.line >= 1, err
