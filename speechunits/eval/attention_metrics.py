"""How well an attention-based TTS decoder followed its input: diagonality, focus, failures.

An alignment is a matrix ``att[T_dec, T_enc]``: row ``t`` is decoder step ``t``'s attention
over the input symbols. Only the first ``enc_len`` columns are input (the rest is padding).
A healthy alignment runs monotonically from the first symbol to the last, one sharp peak per
step; the classic failures of attention TTS (Tacotron and its descendants) are a decoder that
never stops, that stops before the end of the text, that repeats (the peak jumps back) and
that skips words (the peak jumps far ahead).

* :func:`diagonality`: the share of attention mass within ``DIAGONAL_BAND`` of the diagonal,
  with both axes scaled to [0, 1] (step ``t`` of ``T_dec`` is expected near symbol
  ``t / T_dec * enc_len``). The band is that of guided attention (Tachibana et al. 2018,
  ``g = 0.2``): speaking rate varies within a sentence (pauses, long vowels), so a good
  alignment strays from the straight line by a fraction of the input, while a stuck or
  scrambled one leaves the band.
* :func:`focus_rate` (Ren et al. 2019, FastSpeech): the mean over decoder steps of the
  largest weight, 1 for hard attention, ``1 / T_enc`` for uniform attention.
* :func:`attention_failure`: the failure checks, with their reasons.
"""

from __future__ import annotations

import math

import numpy as np

FAILURE_KINDS = ("no stop", "non-finite", "never reaches end", "jumps back", "skips ahead")
"""The kinds of failure :func:`attention_failure` names (the text before the colon of a reason)."""
DIAGONAL_BAND = 0.2
"""Half-width of the diagonal band, as a share of both axes (guided attention's ``g``)."""
END_SLACK_SYMBOLS = 3
"""The argmax must reach one of the last 3 input symbols: the final punctuation and end-of-
sequence symbol may be attended only briefly (or not at all) before the stop token fires."""
MAX_BACKWARD_SYMBOLS = 2
"""The argmax may step back by up to 2 symbols: attention spread over two neighbouring symbols
flickers between them. Further back means the decoder is repeating part of the text."""
MAX_FORWARD_SYMBOLS = 5
"""The argmax may advance by up to 5 symbols in one decoder step. A step covers one to a few
frames (10-60 ms) and even fast speech needs some 30 ms per symbol, so a healthy alignment
advances by one or two; five or more means words were skipped."""


def _checked(att: np.ndarray, enc_len: int) -> np.ndarray:
    a = np.asarray(att, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"attention must be a non-empty [decoder_steps, input_symbols] matrix, got shape {a.shape}")
    if not 1 <= enc_len <= a.shape[1]:
        raise ValueError(f"enc_len {enc_len} outside 1..{a.shape[1]} (the attention's input axis)")
    return a[:, :enc_len]


def diagonality(att: np.ndarray, enc_len: int, band: float = DIAGONAL_BAND) -> float:
    """Share of the attention mass within ``band`` of the diagonal (module docstring); NaN for no mass."""
    a = _checked(att, enc_len)
    t_dec = a.shape[0]
    rows = (np.arange(t_dec) + 0.5) / t_dec
    cols = (np.arange(enc_len) + 0.5) / enc_len
    inside = np.abs(cols[None, :] - rows[:, None]) <= band
    mass = np.abs(a).sum()
    if not np.isfinite(mass) or mass <= 0:
        return math.nan
    return float(np.abs(a)[inside].sum() / mass)


def focus_rate(att: np.ndarray, enc_len: int | None = None) -> float:
    """Mean over decoder steps of the largest attention weight (over the first ``enc_len`` symbols)."""
    a = _checked(att, np.asarray(att).shape[1] if enc_len is None else enc_len)
    return float(a.max(axis=1).mean())


def attention_failure(att: np.ndarray, enc_len: int, stop_fired: bool) -> tuple[bool, list[str]]:
    """``(failed, reasons)``: failed when the stop token never fired, the weights are not finite, the
    argmax never reaches the last ``END_SLACK_SYMBOLS`` symbols, or it jumps back by more than
    ``MAX_BACKWARD_SYMBOLS`` / ahead by more than ``MAX_FORWARD_SYMBOLS`` in one step (the first
    step counts from symbol 0). Each reason reads ``"<kind>: <detail>"``, the kind one of
    ``FAILURE_KINDS``."""
    reasons: list[str] = []
    if not stop_fired:
        reasons.append("no stop: the stop token never fired")
    a = _checked(att, enc_len)
    if not np.isfinite(a).all():
        return True, reasons + ["non-finite: the attention weights are not all finite"]
    peak = a.argmax(axis=1)
    last_needed = max(0, enc_len - END_SLACK_SYMBOLS)
    if int(peak.max()) < last_needed:
        reasons.append(f"never reaches end: furthest symbol {int(peak.max())} of {enc_len}")
    steps = np.diff(peak, prepend=0)  # from symbol 0: starting far into the text is a skip too
    if int(steps.min()) < -MAX_BACKWARD_SYMBOLS:
        t = int(steps.argmin())
        reasons.append(f"jumps back: {-int(steps[t])} symbols at step {t}")
    if int(steps.max()) > MAX_FORWARD_SYMBOLS:
        t = int(steps.argmax())
        reasons.append(f"skips ahead: {int(steps[t])} symbols at step {t}")
    return bool(reasons), reasons


__all__ = ["DIAGONAL_BAND", "END_SLACK_SYMBOLS", "FAILURE_KINDS", "MAX_BACKWARD_SYMBOLS", "MAX_FORWARD_SYMBOLS", "attention_failure",
           "diagonality", "focus_rate"]
