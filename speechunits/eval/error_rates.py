"""Character and word error rates of transcripts, via jiwer (corpus-level: total edits over
total reference characters / words, in percent)."""

from __future__ import annotations

from collections.abc import Sequence


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """``{"cer": pct, "wer": pct}`` of hypotheses against references, as given (no text
    normalisation here: normalise both sides the same way first). Spaces count as characters
    in the CER. ValueError when the lists differ in length, are empty, or every reference is
    empty (no denominator)."""
    import jiwer

    refs, hyps = [str(r) for r in refs], [str(h) for h in hyps]
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no transcripts to score")
    if not any(r.split() for r in refs):
        raise ValueError("every reference is empty: error rates are undefined")
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"cer": 100.0 * float(chars.cer), "wer": 100.0 * float(words.wer)}
