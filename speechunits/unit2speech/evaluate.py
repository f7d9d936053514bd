"""Score synthesized speech against the ground truth: MCD, F0, STOI, the judge's CER/WER.

Both sides are data directories (or manifests) whose utterance ids match: the reference is
the corpus test set, the synthesized one what ``speechunits synthesize`` (or ``resynthesize``)
wrote. Per utterance:

* **MCD** (dB) between mel cepstra of the reference and the synthesized audio, DTW-aligned
  (:func:`speechunits.eval.mcd.mcd_dtw`), so rows with predicted durations are comparable.
* **F0**: both tracks are extracted with Praat (:func:`speechunits.features.f0.extract_f0`),
  laid on one time axis by the DTW path of the two mel cepstra, then compared: log-F0 RMSE in
  cents over frames voiced in both, and the voicing decision error over all aligned frames.
* **STOI** only where the two signals have the same length within one frame hop (stored
  durations, ground truth, Griffin-Lim); otherwise it is not defined and not reported.
* **Judge**: the synthesized audio is transcribed by the CTC judge; CER/WER are corpus level
  (edits summed over utterances) against the reference transcripts.

A synthesized utterance that is missing or unreadable is listed under ``missing``/``bad`` and
left out of every average; the report says how many utterances each figure averages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechunits.audio import load_audio
from speechunits.data.jsonl import load_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError, ManifestError
from speechunits.eval.aligned import dtw_scores
from speechunits.eval.error_rates import error_rates
from speechunits.eval.intelligibility import stoi_score
from speechunits.features.f0 import F0Config

PathLike = str | os.PathLike[str]


@dataclass
class UtteranceScores:
    """The figures of one synthesized utterance (None: not defined for it)."""

    id: str
    mcd_db: float
    log_f0_rmse_cents: float | None
    voicing_error: float
    stoi: float | None
    seconds: float
    hypothesis: str | None = None


@dataclass
class SynthesisReport:
    """Corpus-level figures of one system (one row of the results table)."""

    name: str
    num_reference: int
    num_scored: int
    mcd_db: float | None
    log_f0_rmse_cents: float | None
    voicing_error_pct: float | None
    stoi: float | None
    stoi_utterances: int
    judge_cer: float | None
    judge_wer: float | None
    missing: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    rerecognition: dict[str, Any] = field(default_factory=dict)
    utterances: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def score_utterance(ref_wave: np.ndarray, hyp_wave: np.ndarray, sample_rate: int, utt_id: str,
                    f0_cfg: F0Config = F0Config(), stoi_tolerance: int = 320) -> UtteranceScores:
    """MCD, F0 errors and (same-length signals only) STOI of one synthesized utterance.

    One DTW alignment of the two mel-cepstrum sequences gives the MCD and lays the F0 tracks
    on one time axis (:func:`speechunits.eval.aligned.dtw_scores`).
    """
    scores = dtw_scores(ref_wave, hyp_wave, sample_rate, f0_cfg)
    stoi = None
    if abs(len(ref_wave) - len(hyp_wave)) <= stoi_tolerance:
        n = min(len(ref_wave), len(hyp_wave))
        stoi = stoi_score(ref_wave[:n], hyp_wave[:n], sample_rate)
    cents = scores["log_f0_rmse_cents"]
    return UtteranceScores(utt_id, scores["mcd_db"], None if cents is None or not math.isfinite(cents) else float(cents),
                           float(scores["voicing_error"]), stoi, len(hyp_wave) / sample_rate)


def _by_id(utts: Sequence[Utterance]) -> dict[str, Utterance]:
    return {u.id: u for u in utts}


def evaluate_synthesis(
    name: str,
    synthesized: PathLike,
    reference: PathLike,
    *,
    judge: Any | None = None,
    beam: int = 1,
    sample_rate: int = 16000,
    f0_cfg: F0Config = F0Config(),
    limit: int | None = None,
    progress: bool = True,
) -> SynthesisReport:
    """Score every reference utterance that ``synthesized`` holds (see the module docstring).

    ``judge`` is an object with ``transcribe(waves, sample_rate, beam) -> list[str]`` (the ASR
    judge of :mod:`speechunits.asr`); without one, CER/WER are None. ``limit`` scores the first
    ``limit`` reference ids only (sorted), for quick looks.
    """
    refs = _by_id(load_manifest(reference))
    hyps = _by_id(load_manifest(synthesized, require_text=False))
    ids = sorted(refs)[:limit] if limit else sorted(refs)
    missing = [i for i in ids if i not in hyps]
    bad: list[str] = []
    scores: list[UtteranceScores] = []
    waves: dict[str, np.ndarray] = {}
    for utt_id in tqdm([i for i in ids if i in hyps], desc=f"score {name}", unit="utt", disable=not progress,
                       leave=False):
        try:
            ref_wave = load_audio(refs[utt_id].audio, sample_rate)
            hyp_wave = load_audio(hyps[utt_id].audio, sample_rate)
        except AudioError as err:
            bad.append(f"{utt_id}\t{err}")
            continue
        scores.append(score_utterance(ref_wave, hyp_wave, sample_rate, utt_id, f0_cfg))
        waves[utt_id] = hyp_wave
    cer = wer = None
    if judge is not None and scores:
        texts = [refs[s.id].text for s in scores]
        if any(t is None for t in texts):
            no_text = next(s.id for s in scores if refs[s.id].text is None)
            raise ManifestError(reference, f"utterance {no_text!r} has no transcript: the judge needs one for every "
                                           "scored utterance")
        hyp_texts = judge.transcribe([waves[s.id] for s in scores], sample_rate, beam=beam)
        for s, text in zip(scores, hyp_texts):
            s.hypothesis = text
        rates = error_rates([str(t) for t in texts], hyp_texts)
        cer, wer = rates["cer"], rates["wer"]
    stoi_values = [s.stoi for s in scores if s.stoi is not None]
    voicing = _mean([s.voicing_error for s in scores])
    return SynthesisReport(
        name=name, num_reference=len(ids), num_scored=len(scores), mcd_db=_mean([s.mcd_db for s in scores]),
        log_f0_rmse_cents=_mean([s.log_f0_rmse_cents for s in scores]),
        voicing_error_pct=None if voicing is None else 100.0 * voicing,
        stoi=_mean(stoi_values), stoi_utterances=len(stoi_values), judge_cer=cer, judge_wer=wer,
        missing=missing, bad=bad, utterances=[asdict(s) for s in scores])


def write_report(report: SynthesisReport, path: PathLike) -> Path:
    """The report as JSON (atomic)."""
    from speechunits.io_utils import atomic_write_json

    atomic_write_json(Path(path), report.to_dict())
    return Path(path)
