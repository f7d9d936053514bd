"""Reading a corpus's audio into memory, skipping (and reporting) what cannot be read.

Training tasks that hold a whole corpus in memory (the judge, the TTS model) load it with
:func:`load_waves` and report the unusable files with :func:`report_bad`: a bad file costs
only its utterance, and the user sees which one and why.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from speechunits.audio import load_audio
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError


def load_waves(utts: Sequence[Utterance], sample_rate: int, desc: str = "load audio",
               progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Waveforms at ``sample_rate`` by id, and the reason per id of the audio that could not
    be read (skipped)."""
    waves: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for utt in tqdm(utts, desc=desc, unit="utt", file=sys.stderr, disable=not progress or None, leave=False):
        try:
            waves[utt.id] = load_audio(utt.audio, target_sr=sample_rate)
        except AudioError as err:
            bad[utt.id] = str(err)
    return waves, bad


def report_bad(bad: dict[str, str], what: str, limit: int = 5) -> None:
    """One stderr line per skipped utterance (the first ``limit``) and a count."""
    if not bad:
        return
    for utt_id, reason in list(bad.items())[:limit]:
        print(f"{what}: skipped {utt_id}: {reason}", file=sys.stderr)
    if len(bad) > limit:
        print(f"{what}: ... and {len(bad) - limit} more", file=sys.stderr)
    print(f"{what}: {len(bad)} utterance(s) with unusable audio skipped", file=sys.stderr)
