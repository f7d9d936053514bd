"""Synthetic corpora with true alignments: Festival (and espeak-ng) speech in real corpus layouts.

``synthesize_librispeech``, ``synthesize_ljspeech``, ``synthesize_fsc``, ``synthesize_slurp`` and
``synthesize_zr2021`` write the LibriSpeech-, LJSpeech-, Fluent-Speech-Commands-, SLURP- and
ZeroSpeech-2021-shaped corpora
that the real loaders in :mod:`speechunits.data.corpora` read (the last holds the sWUGGY/sBLIMP-style
minimal pairs of :mod:`.probes`); ``speechunits synth-corpus`` is the command line.
:mod:`.layouts` (and :mod:`.slurp_layout`) plans a corpus from its seed and sizes; :mod:`.corpus_job` generates a plan on
the sharded-job runner of :mod:`speechunits.jobs` (parallel jobs, resume, merge).
"""

from __future__ import annotations

from speechunits.data.synth.layouts import (
    synthesize_fsc,
    synthesize_librispeech,
    synthesize_ljspeech,
    synthesize_zr2021,
)
from speechunits.data.synth.slurp_layout import synthesize_slurp

__all__ = ["synthesize_fsc", "synthesize_slurp", "synthesize_librispeech", "synthesize_ljspeech", "synthesize_zr2021"]
