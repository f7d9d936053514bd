"""espeak-ng as a phonemizer: phrases in, phonemes per word out, many phrases per process.

espeak-ng segments its own IPA into phonemes when given ``--sep`` (``h_ə_l_ˈoʊ``: stress and
length marks stay on their vowel, affricates and diphthongs stay whole), so no IPA parsing is
needed here. Starting a process costs more than phonemizing a sentence, so a batch is fed to a
few processes, one phrase per line: with ``-l`` every input line ends a clause, and a sentinel
line after each phrase marks where its output ends (espeak-ng may break a long clause into
several output lines, and prints nothing for a phrase with nothing to say). When the sentinels
do not come back one per phrase, the piece is halved and each half redone, down to single
phrases, which run without a sentinel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from speechunits.errors import ConfigError, ExternalToolError

PACKAGE = "espeak-ng"
"""The Debian package that provides the binary."""

SEPARATOR = "_"
"""Phoneme separator inside a word (espeak-ng ``--sep``); never part of an IPA symbol."""

SENTINEL = "qqxqq"
"""A line whose phonemes no real phrase produces: its output line closes the phrase before it."""

MAX_LINE = 1_000_000
"""``-l``: input lines shorter than this (all of them) end a clause."""

PIECE_PHRASES = 256
"""Phrases per espeak-ng process in a batch: large enough to amortise the start, small enough to
spread over the workers and move the progress bar."""

_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")  # "(fr)" around a foreign word


def espeak_binary() -> str:
    """Path of ``espeak-ng``; ExternalToolError naming the package and the alternative when missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ExternalToolError(None, f"espeak-ng is not installed, and the phoneme front end needs it: install the "
                                      f"Debian package {PACKAGE} (`make install`), or use `--frontend characters` "
                                      "(a different model input: letters instead of phonemes)")
    return exe


def default_workers() -> int:
    """espeak-ng processes run at once: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


class Espeak:
    """One espeak-ng language; :meth:`phonemize` turns phrases into words of phonemes."""

    def __init__(self, language: str, workers: int | None = None) -> None:
        self.exe = espeak_binary()
        self.language = language
        self.workers = workers or default_workers()
        self.version = self._version()
        try:
            self.sentinel = self._run([SENTINEL]).strip()
        except ExternalToolError as err:
            raise ConfigError(None, f"espeak-ng cannot phonemize language {language!r} ({err.problem}); "
                                    "`espeak-ng --voices` lists the languages") from None
        if not self.sentinel:
            raise ExternalToolError(None, f"espeak-ng printed no phonemes for {SENTINEL!r} in language {language!r}")

    def _version(self) -> str:
        proc = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=60)
        match = re.search(r"(\d+\.\d+(?:\.\d+)?)", proc.stdout)
        return match.group(1) if match else proc.stdout.strip()

    def _run(self, lines: Sequence[str]) -> str:
        """espeak-ng's stdout for ``lines``, one clause each."""
        cmd = [self.exe, "-q", "-b", "1", "--ipa", f"--sep={SEPARATOR}", "-l", str(MAX_LINE),
               "-v", self.language, "--stdin"]
        proc = subprocess.run(cmd, input="".join(line + "\n" for line in lines), capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=600)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
            raise ExternalToolError(None, f"espeak-ng failed (exit status {proc.returncode}, language "
                                          f"{self.language!r}): {tail or 'no message'}")
        return proc.stdout

    def _piece(self, phrases: Sequence[str]) -> list[list[list[str]]]:
        """Phonemes of some phrases in one process; bisected if the sentinels got lost."""
        lines: list[str] = []
        for phrase in phrases:
            lines += [phrase, SENTINEL]
        groups: list[list[str]] = [[]]
        for line in self._run(lines).splitlines():
            line = line.strip()
            if line == self.sentinel:
                groups.append([])
            elif line:
                groups[-1].append(line)
        if len(groups) == len(phrases) + 1 and not groups[-1]:
            return [_words(" ".join(g)) for g in groups[:-1]]
        if len(phrases) == 1:  # the phrase itself reads like the sentinel: take it without one
            return [_words(self._run(phrases))]
        half = len(phrases) // 2  # bisect, so one odd phrase costs a few processes, not one per phrase
        return self._piece(phrases[:half]) + self._piece(phrases[half:])

    def phonemize(self, phrases: Sequence[str], progress: bool = False) -> list[list[list[str]]]:
        """For each phrase (no newlines), its words, each a list of phoneme symbols."""
        for phrase in phrases:
            if "\n" in phrase or "\r" in phrase:
                raise ValueError(f"a phrase holds no line break, got {phrase!r}")
        pieces = [phrases[i: i + PIECE_PHRASES] for i in range(0, len(phrases), PIECE_PHRASES)]
        if len(pieces) <= 1:
            return self._piece(phrases) if phrases else []
        out: list[list[list[str]]] = []
        with ThreadPoolExecutor(max_workers=self.workers) as pool, \
                tqdm(total=len(phrases), desc="espeak-ng", unit="phrase", disable=not progress, file=sys.stderr) as bar:
            for piece, result in zip(pieces, pool.map(self._piece, pieces)):
                out += result
                bar.update(len(piece))
        return out


def _words(output: str) -> list[list[str]]:
    """espeak-ng output of one phrase -> words of phonemes (language-switch marks and the empty
    symbols espeak-ng leaves for silent pauses dropped)."""
    words = []
    for word in _LANGUAGE_SWITCH.sub("", output).split():
        phonemes = [p for p in word.split(SEPARATOR) if p]
        if phonemes:
            words.append(phonemes)
    return words
