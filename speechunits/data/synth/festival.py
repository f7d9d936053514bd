"""Drive Festival in batch: one process synthesizes many utterances and reports true timings.

For each request a generated Scheme script selects the voice, sets the prosody
(``Duration_Stretch`` and ``int_lr_params`` for diphone voices; the hts_engine speed rate
``-r`` for HTS voices, whose own duration model ignores ``Duration_Stretch``), synthesizes
the text, saves the wave and writes the ``Segment`` (phones), ``Syllable`` (with the
syllable's phones via ``SylStructure``) and ``Word`` relation timings to a text file,
which :func:`parse_timings` reads back. These timings are Festival's own numbers.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechunits.data.alignments import Interval
from speechunits.data.synth.voices import FESTIVAL_VOICES, Speaker
from speechunits.errors import ExternalToolError

PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
MAX_END_MISMATCH_S = 0.05
"""Largest allowed gap between the last segment end and the audio length (diphone voices
overrun the final pause by one analysis frame, ~25 ms)."""

_DUMP_FN = r"""
(define (su_join lst)
  (if (null? lst) ""
      (if (null? (cdr lst)) (car lst) (string-append (car lst) "-" (su_join (cdr lst))))))
(define (su_syl_phones s)
  (su_join (mapcar item.name (item.daughters (item.relation s 'SylStructure)))))
(define (su_dump u path)
  (let ((fd (fopen path "w")))
    (mapcar (lambda (s) (format fd "SEG\t%s\t%f\t%f\n" (item.name s)
                                (item.feat s "segment_start") (item.feat s "segment_end")))
            (utt.relation.items u 'Segment))
    (mapcar (lambda (s) (format fd "SYL\t%s\t%f\t%f\n" (su_syl_phones s)
                                (item.feat s "syllable_start") (item.feat s "syllable_end")))
            (utt.relation.items u 'Syllable))
    (mapcar (lambda (w) (format fd "WRD\t%s\t%f\t%f\n" (item.name w)
                                (item.feat w "word_start") (item.feat w "word_end")))
            (utt.relation.items u 'Word))
    (format fd "END\n")
    (fclose fd)))
"""


@dataclass(frozen=True)
class FestivalRequest:
    """One utterance to synthesize: ``key`` names its files in the work directory."""

    key: str
    text: str
    speaker: Speaker


@dataclass
class FestivalResult:
    """Festival's wave (float32, at the voice's own rate) and its timings in seconds."""

    key: str
    wav: np.ndarray
    sample_rate: int
    phones: list[Interval]
    syllables: list[Interval]
    words: list[Interval]

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate

    def tiers(self) -> dict[str, list[Interval]]:
        """TextGrid tiers: words (lower-case), syllables (``h-e-l`` labels), phones (with ``pau``)."""
        return {
            "words": [Interval(w.start, w.end, w.label.lower()) for w in self.words],
            "syllables": list(self.syllables),
            "phones": list(self.phones),
        }


def festival_binary() -> str:
    """Path of ``festival``; ExternalToolError naming the Debian packages when missing."""
    exe = shutil.which("festival")
    if exe is None:
        raise ExternalToolError(
            None, f"festival is not installed: install the Debian packages {PACKAGES} (`make install` does this)"
        )
    return exe


@functools.lru_cache(maxsize=None)
def installed_voices() -> tuple[str, ...]:
    """Festival's ``(voice.list)``."""
    proc = subprocess.run(
        [festival_binary(), "-b", "(begin (print (voice.list)))"], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise ExternalToolError(None, f"festival failed to list voices: {proc.stderr.strip()[-500:]}")
    return tuple(proc.stdout.strip().strip("()").split())


def check_festival(voices: Sequence[str]) -> None:
    """Raise ExternalToolError unless festival and the voices (keys of FESTIVAL_VOICES) are installed."""
    have = set(installed_voices())
    missing = [FESTIVAL_VOICES[v] for v in voices if FESTIVAL_VOICES[v].name not in have]
    if missing:
        pkgs = " ".join(v.package for v in missing)
        names = ", ".join(v.name for v in missing)
        raise ExternalToolError(
            None, f"Festival voice(s) {names} not installed: install the Debian package(s) {pkgs} (`make install`)"
        )


def lexicon_words(words: Sequence[str], lexicon: str = "cmu") -> set[str]:
    """The ``words`` that Festival's ``lexicon`` lists (one festival process for all of them).

    Festival's CMU lexicon leaves out many words its letter-to-sound rules already say right,
    so a word missing here may still be English; a word found here is one.
    """
    if not words:
        return set()
    exe = festival_binary()
    lines = [f"(begin (lex.select {scheme_string(lexicon)})"]
    lines += [f"(if (lex.lookup_all {scheme_string(w)}) (format t \"%s\\n\" {scheme_string(w)}))" for w in words]
    lines.append(")")
    with tempfile.TemporaryDirectory(prefix="su-festival-") as tmp:
        script = Path(tmp) / "lookup.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        proc = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True, timeout=60 + len(words) // 100)
    if proc.returncode != 0:
        raise ExternalToolError(None, f"festival failed to look words up in lexicon {lexicon!r}: "
                                      f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return set(proc.stdout.split()) & set(words)


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def prosody_commands(speaker: Speaker) -> str:
    """Scheme selecting the speaker's voice and prosody (every setting explicit, so state never leaks)."""
    voice = FESTIVAL_VOICES[speaker.voice]
    cmds = [f"(voice_{voice.name})", f"(Parameter.set 'Duration_Stretch {speaker.stretch:.6f})"]
    if voice.engine == "diphone":
        mean = speaker.f0_mean if speaker.f0_mean is not None else voice.base_f0
        std = speaker.f0_std if speaker.f0_std is not None else 14.0
        cmds.append(
            f"(set! int_lr_params '((target_f0_mean {mean:.3f}) (target_f0_std {std:.3f}) "
            "(model_f0_mean 170) (model_f0_std 34)))"
        )
    else:
        cmds[1] = "(Parameter.set 'Duration_Stretch 1.0)"
        cmds.append(
            f"(set! hts_engine_params (append {voice.name}::hts_engine_params "
            f"(list (list \"-r\" {1.0 / speaker.stretch:.6f}))))"
        )
    return "\n ".join(cmds)


def scheme_script(requests: Sequence[FestivalRequest], workdir: Path) -> str:
    """The batch script: one ``(begin ...)`` block per request."""
    parts = [_DUMP_FN]
    for req in requests:
        wav = scheme_string(str(workdir / f"{req.key}.wav"))
        txt = scheme_string(str(workdir / f"{req.key}.txt"))
        parts.append(
            f"(begin\n {prosody_commands(req.speaker)}\n"
            f" (set! su_utt (utt.synth (eval (list 'Utterance 'Text {scheme_string(req.text)}))))\n"
            f" (utt.save.wave su_utt {wav} 'riff)\n"
            f" (su_dump su_utt {txt}))\n"
        )
    return "\n".join(parts)


def parse_timings(path: Path) -> tuple[list[Interval], list[Interval], list[Interval]]:
    """(phones, syllables, words) from a dump file; ValueError if it is incomplete."""
    phones: list[Interval] = []
    syllables: list[Interval] = []
    words: list[Interval] = []
    complete = False
    target = {"SEG": phones, "SYL": syllables, "WRD": words}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line == "END":
            complete = True
            break
        kind, label, start, end = line.split("\t")
        target[kind].append(Interval(float(start), float(end), label))
    if not complete:
        raise ValueError(f"{path}: timing dump is incomplete")
    return phones, syllables, words


def synthesize_each(requests: Sequence[FestivalRequest]) -> list[FestivalResult | ExternalToolError]:
    """Like :func:`synthesize_batch`, but an utterance festival fails on yields its error, not the batch's.

    The batch runs in one festival process first. A failure cannot be pinned on one block of
    the batch script (a SIOD error ends the whole script, and a timeout says nothing), so then
    each request runs again alone: one festival start per utterance of a failing batch, paid
    only on failure. Output does not depend on the batch (every block sets its voice and
    prosody explicitly), so the utterances that succeed alone are the same as in a batch. A
    missing festival is the run's error, not an utterance's: it is raised.
    """
    if not requests:
        return []
    festival_binary()
    try:
        return list(synthesize_batch(requests))
    except ExternalToolError as err:
        if len(requests) == 1:
            return [err]
    return [res for req in requests for res in synthesize_each([req])]


def synthesize_batch(requests: Sequence[FestivalRequest], workdir: str | os.PathLike[str] | None = None,
                     timeout_s: float | None = None) -> list[FestivalResult]:
    """Synthesize all requests in ONE festival process; results in request order.

    Raises ExternalToolError naming the first utterance (and its text) that festival did
    not finish, with the tail of festival's stderr.
    """
    if not requests:
        return []
    exe = festival_binary()
    with tempfile.TemporaryDirectory(prefix="su-festival-", dir=workdir) as tmp:
        work = Path(tmp)
        script = work / "batch.scm"
        script.write_text(scheme_script(requests, work), encoding="utf-8")
        timeout = timeout_s if timeout_s is not None else 60 + 20 * len(requests)
        try:
            proc = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise ExternalToolError(script, f"festival timed out after {timeout:.0f} s on {len(requests)} utterances") from err
        results = []
        for req in requests:
            wav_path, txt_path = work / f"{req.key}.wav", work / f"{req.key}.txt"
            try:
                phones, syllables, words = parse_timings(txt_path)
                wav, sr = sf.read(wav_path, dtype="float32")
            except (OSError, ValueError, sf.LibsndfileError) as err:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
                raise ExternalToolError(
                    None,
                    f"festival failed on utterance {req.key} ({req.text!r}, voice {req.speaker.voice}); "
                    f"exit status {proc.returncode}; festival said: {tail or '(nothing)'}",
                ) from err
            if wav.ndim > 1:
                wav = wav.mean(axis=1)
            if not phones or len(wav) == 0:
                raise ExternalToolError(None, f"festival produced no audio for utterance {req.key} ({req.text!r})")
            res = FestivalResult(req.key, np.ascontiguousarray(wav, dtype=np.float32), int(sr), phones, syllables, words)
            mismatch = abs(res.duration - phones[-1].end)
            if mismatch > MAX_END_MISMATCH_S:
                raise ExternalToolError(
                    None, f"festival timings of utterance {req.key} ({req.text!r}) end at {phones[-1].end:.3f} s "
                    f"but the audio lasts {res.duration:.3f} s"
                )
            results.append(res)
    return results
