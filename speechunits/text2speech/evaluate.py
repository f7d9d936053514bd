"""Score a TTS model's synthesis output directory: quality, prosody transfer, diversity, attention.

Per synthesized utterance (a row of ``OUT/manifest.jsonl``, :mod:`speechunits.text2speech.synth_dir`):

* **MCD and FFE** against the natural recording of the same text in the reference data dir,
  on one DTW alignment (:func:`speechunits.eval.aligned.dtw_scores`). The recording is
  ``reference_id``'s for ``transfer`` rows (the reference says the same text) and
  ``source_id``'s otherwise: a ``style`` row's reference says another sentence, so comparing
  frames with it would measure the text, not the synthesis.
* **Prosody** of the output (:func:`speechunits.eval.prosody_metrics.utterance_prosody`):
  median F0 and F0 range in semitones, and the speaking time per input symbol
  (``speech_seconds / num_symbols``).
* **Attention** from the saved alignment and ``stop_fired``
  (:mod:`speechunits.eval.attention_metrics`).

Across rows:

* **Transfer correlation** over the rows with a reference (``transfer`` and ``style``): Pearson
  r with a 95 % bootstrap interval between the reference's prosody and the output's. The
  reference's prosody is the generator's record (``--prosody-labels``: ``f0_mean`` as semitones,
  ``stretch``, ``f0_std``) when given, else what is measured on the reference audio (its
  duration per symbol only for ``transfer`` rows, whose reference has the row's symbols).
* **Diversity**: rows grouped by (mode, temperature, posterior mean), then by ``source_id``
  across seeds: :func:`~speechunits.eval.prosody_metrics.spread_across_seeds` of the median F0
  (semitones) and of the speech seconds.
* Attention failure rate, mean diagonality and focus, mean KL, and the judge's CER/WER on
  the row's text (``--judge``).

A synthesized utterance whose audio is missing or unreadable (or disagrees with its manifest
line) is listed under ``missing``/``bad`` and left out of every figure; rows without a
recording of their text in the reference data dir under ``no_reference``; unreadable
attention files under ``bad_attention``. Every figure carries ``n``, the utterances behind it.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechunits.audio import audio_info, load_audio
from speechunits.data.jsonl import load_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError
from speechunits.eval.aligned import dtw_scores
from speechunits.eval.attention_metrics import attention_failure, diagonality, focus_rate
from speechunits.eval.error_rates import error_rates
from speechunits.eval.prosody_metrics import (
    bootstrap_pearson, probe_predictions, rows_with_spread, spread_across_seeds, utterance_prosody,
)
from speechunits.features.f0 import F0Config
from speechunits.text2speech.labels import ProsodyLabel, read_prosody_labels
from speechunits.text2speech.synth_dir import SynthRow, read_synth_manifest, read_synth_meta

PathLike = str | os.PathLike[str]
JUDGE_CHUNK = 32
"""Utterances the judge transcribes at once (waves are not all held in memory)."""


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an undefined figure is ``null``."""
    return None if value is None or not math.isfinite(value) else float(value)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (recursively) replaced by None."""
    if isinstance(obj, float):
        return finite_or_none(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def figure(values: Iterable[float | None], scale: float = 1.0) -> dict[str, Any]:
    """``{"value": mean of the finite values * scale, "n": how many}`` (``value`` None when n = 0)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {"value": float(np.mean(kept)) * scale if kept else None, "n": len(kept)}


def correlation(x: Sequence[float], y: Sequence[float], n_boot: int, seed: int = 0) -> dict[str, Any]:
    """``{"r", "lo", "hi", "n"}`` over the pairs where both are finite (None where undefined)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = int((np.isfinite(xa) & np.isfinite(ya)).sum())
    r, lo, hi = bootstrap_pearson(xa, ya, n=n_boot, seed=seed)
    return {"r": finite_or_none(r), "lo": finite_or_none(lo), "hi": finite_or_none(hi), "n": n}


def text_reference_id(row: SynthRow) -> str:
    """The utterance whose recording says this row's text (module docstring)."""
    return row.reference_id if row.mode == "transfer" and row.reference_id else row.source_id


def _check_audio(row: SynthRow) -> None:
    """AudioError when the wave's header disagrees with the manifest (a truncated or foreign file)."""
    info = audio_info(row.audio)
    if info.sample_rate != row.sample_rate or info.num_samples != row.num_samples:
        raise AudioError(row.audio, f"holds {info.num_samples} samples at {info.sample_rate} Hz, the manifest says "
                                    f"{row.num_samples} at {row.sample_rate} Hz")


def _attention(row: SynthRow) -> dict[str, Any]:
    """Failure, reasons, diagonality and focus of the row's alignment; ValueError/OSError when unusable."""
    assert row.attention is not None
    att = np.load(row.attention, allow_pickle=False)
    if att.shape != (row.decoder_steps, row.num_symbols):
        raise ValueError(f"shape {tuple(att.shape)}, the manifest says [decoder_steps={row.decoder_steps}, "
                         f"num_symbols={row.num_symbols}]")
    failed, reasons = attention_failure(att, row.num_symbols, row.stop_fired)
    return {"failed": failed, "reasons": reasons, "diagonality": diagonality(att, row.num_symbols),
            "focus_rate": focus_rate(att, row.num_symbols)}


class _ReferenceProsody:
    """The measured prosody of reference recordings, once per recording (seeds share them)."""

    def __init__(self, refs: Mapping[str, Utterance], sample_rate: int | None, f0_cfg: F0Config) -> None:
        self.refs, self.sample_rate, self.f0_cfg = refs, sample_rate, f0_cfg
        self.cache: dict[str, dict[str, float] | None] = {}
        self.bad: dict[str, str] = {}

    def __call__(self, row: SynthRow) -> dict[str, float] | None:
        assert row.reference_id is not None
        key = row.reference_id
        if key not in self.cache:
            audio = self.refs[key].audio if key in self.refs else row.reference_audio
            self.cache[key] = None
            if audio is None:
                self.bad[key] = "not in the reference data dir and no reference_audio"
            else:
                try:
                    rate = self.sample_rate or row.sample_rate
                    self.cache[key] = utterance_prosody(load_audio(audio, rate), rate, self.f0_cfg)
                except AudioError as err:
                    self.bad[key] = str(err)
        return self.cache[key]


def _transfer_pairs(scored: Sequence[dict[str, Any]], rows: Mapping[str, SynthRow],
                    labels: Mapping[str, ProsodyLabel] | None, measured: _ReferenceProsody) -> tuple[dict, list[str]]:
    """(``{"f0": (x, y), "duration": (x, y), "f0_std": (x, y)}``, reference ids without a label)."""
    pairs: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("f0", "duration", "f0_std")}
    no_label: list[str] = []

    def add(kind: str, x: float | None, y: float) -> None:
        if x is not None and math.isfinite(x) and math.isfinite(y):
            pairs[kind][0].append(float(x))
            pairs[kind][1].append(float(y))

    for rec in scored:
        row = rows[rec["id"]]
        if row.mode == "text" or row.reference_id is None:
            continue
        if labels is not None:
            label = labels.get(row.reference_id)
            if label is None:
                no_label.append(row.id)
                continue
            add("f0", label.f0_semitones, rec["median_f0_semitones"])
            add("duration", label.stretch, rec["seconds_per_symbol"])
            add("f0_std", label.f0_std_hz, rec["f0_std_semitones"])
        else:
            ref = measured(row)
            if ref is None:
                continue
            add("f0", ref["median_f0_semitones"], rec["median_f0_semitones"])
            if row.mode == "transfer":
                add("duration", ref["speech_seconds"] / row.num_symbols, rec["seconds_per_symbol"])
            add("f0_std", ref["f0_std_semitones"], rec["f0_std_semitones"])
    return pairs, no_label


def _latent_probe(rows: Sequence[SynthRow], labels: Mapping[str, ProsodyLabel] | None,
                  n_boot: int) -> dict[str, Any] | None:
    """Held-out correlation of the recorded F0 shift / stretch with ridge predictions from the references'
    posterior means (:func:`~speechunits.eval.prosody_metrics.probe_predictions`); None without labels or means."""
    usable = [(r, labels.get(r.reference_id)) for r in rows
              if labels is not None and r.reference_id and r.prosody_mean is not None]
    usable = [(r, lab) for r, lab in usable if lab is not None]
    if not usable:
        return None
    x = np.array([r.prosody_mean for r, _ in usable])
    out = {}
    for name, attr in (("f0", "f0_semitones"), ("duration", "stretch")):
        y = np.array([np.nan if getattr(lab, attr) is None else float(getattr(lab, attr)) for _, lab in usable])
        out[name] = correlation(y, probe_predictions(x, y), n_boot)
    return out


def _diversity(scored: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spread across seeds per (mode, temperature, posterior mean) group."""
    groups: dict[tuple[str, float | None, bool], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in scored:
        groups[(rec["mode"], rec["temperature"], rec["posterior_mean"])][rec["source_id"]].append(rec)
    out = []
    for (mode, temperature, posterior_mean), by_source in sorted(
            groups.items(), key=lambda kv: (kv[0][0], -math.inf if kv[0][1] is None else kv[0][1], kv[0][2])):
        seeds = max(len(v) for v in by_source.values())
        f0 = np.full((len(by_source), seeds), math.nan)
        dur = np.full((len(by_source), seeds), math.nan)
        for i, recs in enumerate(by_source.values()):
            for j, rec in enumerate(sorted(recs, key=lambda r: r["seed"])):
                f0[i, j] = rec["median_f0_semitones"]
                dur[i, j] = rec["speech_seconds"]
        out.append({"mode": mode, "temperature": temperature, "posterior_mean": posterior_mean,
                    "sources": len(by_source), "max_seeds": seeds,
                    "f0_spread_semitones": {"value": spread_across_seeds(f0), "n": rows_with_spread(f0)},
                    "duration_spread_seconds": {"value": spread_across_seeds(dur), "n": rows_with_spread(dur)}})
    return out


def evaluate_tts(
    synth_dir: PathLike,
    references: PathLike | Sequence[PathLike],
    *,
    labels: PathLike | None = None,
    judge: Any | None = None,
    beam: int = 1,
    sample_rate: int | None = None,
    f0_cfg: F0Config = F0Config(),
    bootstrap: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """The report of one synthesis output directory (module docstring; keys in docs/tts.md).

    ``references``: one or more data dirs holding the recordings that rows name as
    ``source_id`` / ``reference_id`` (a style row needs both the test set and the style set).

    ``judge``: an object with ``transcribe(waves, sample_rate, beam) -> list[str]`` (the
    :mod:`speechunits.asr` judge); ``sample_rate``: the rate both sides are compared at
    (default: each row's own).
    """
    from speechunits.asr.vocab import normalize_text

    rows = read_synth_manifest(synth_dir)
    meta = read_synth_meta(synth_dir)
    sources = [references] if isinstance(references, (str, os.PathLike)) else list(references)
    refs = {u.id: u for source in sources for u in load_manifest(source, require_text=False)}
    label_map = read_prosody_labels(labels) if labels is not None else None
    by_id = {r.id: r for r in rows}
    measured = _ReferenceProsody(refs, sample_rate, f0_cfg)
    missing: list[str] = []
    bad: list[str] = []
    no_reference: list[str] = []
    bad_reference: list[str] = []
    bad_attention: list[str] = []
    scored: list[dict[str, Any]] = []
    judge_refs: list[str] = []
    judge_hyps: list[str] = []
    pending: list[tuple[dict[str, Any], np.ndarray, int]] = []

    def flush() -> None:
        if judge is None or not pending:
            return
        by_rate: dict[int, list[tuple[dict[str, Any], np.ndarray, int]]] = defaultdict(list)
        for item in pending:
            by_rate[item[2]].append(item)
        for rate, items in by_rate.items():
            texts = judge.transcribe([w for _, w, _ in items], rate, beam=beam)
            for (rec, _, _), hyp in zip(items, texts):
                rec["hypothesis"] = hyp
                judge_refs.append(normalize_text(by_id[rec["id"]].text))
                judge_hyps.append(hyp)
        pending.clear()

    for row in tqdm(rows, desc="tts-evaluate", unit="utt", disable=not progress, leave=False):
        if not row.audio.exists():
            missing.append(f"{row.id}\t{row.audio}: no such file")
            continue
        rate = sample_rate or row.sample_rate
        try:
            _check_audio(row)
            wave = load_audio(row.audio, rate)
        except AudioError as err:
            bad.append(f"{row.id}\t{err}")
            continue
        prosody = utterance_prosody(wave, rate, f0_cfg)
        rec: dict[str, Any] = {
            "id": row.id, "source_id": row.source_id, "mode": row.mode, "seed": row.seed,
            "temperature": row.temperature, "posterior_mean": row.posterior_mean, "reference_id": row.reference_id,
            "kl": row.kl, **prosody, "seconds_per_symbol": prosody["speech_seconds"] / row.num_symbols,
        }
        ref_id = text_reference_id(row)
        rec["text_reference_id"] = ref_id
        rec.update({"mcd_db": math.nan, "f0_frame_error": math.nan, "log_f0_rmse_cents": math.nan,
                    "voicing_error": math.nan})
        if ref_id in refs:
            try:
                ref_wave = load_audio(refs[ref_id].audio, rate)
            except AudioError as err:
                bad_reference.append(f"{row.id}\t{err}")
            else:
                scores = dtw_scores(ref_wave, wave, rate, f0_cfg)
                rec.update({k: scores[k] for k in ("mcd_db", "f0_frame_error", "log_f0_rmse_cents", "voicing_error")})
        else:
            no_reference.append(row.id)
        rec["attention"] = None
        if row.attention is not None:
            try:
                rec["attention"] = _attention(row)
            except (OSError, ValueError) as err:
                bad_attention.append(f"{row.id}\t{row.attention}: {err}")
        scored.append(rec)
        if judge is not None:
            pending.append((rec, wave, rate))
            if len(pending) >= JUDGE_CHUNK:
                flush()
    flush()

    pairs, no_label = _transfer_pairs(scored, by_id, label_map, measured)
    att = [r["attention"] for r in scored if r["attention"] is not None]
    reasons = Counter(reason.split(":")[0] for a in att for reason in a["reasons"])
    judge_fig = None
    if judge is not None:
        judge_fig = {"cer": None, "wer": None, "n": len(judge_hyps)}
        if judge_hyps and any(t.split() for t in judge_refs):
            judge_fig.update(error_rates(judge_refs, judge_hyps))
    return json_safe({
        "synth": str(synth_dir), "references": str(references), "labels": None if labels is None else str(labels),
        "meta": meta, "sample_rate": sample_rate,
        "num_rows": len(rows), "num_scored": len(scored),
        "mcd_db": figure(r["mcd_db"] for r in scored),
        "ffe_pct": figure((r["f0_frame_error"] for r in scored), 100.0),
        "log_f0_rmse_cents": figure(r["log_f0_rmse_cents"] for r in scored),
        "voicing_error_pct": figure((r["voicing_error"] for r in scored), 100.0),
        "transfer": {"source": "labels" if label_map is not None else "reference audio",
                     **{k: correlation(x, y, bootstrap) for k, (x, y) in pairs.items()}},
        "latent_probe": _latent_probe(rows, label_map, bootstrap),
        "diversity": _diversity(scored),
        "attention": {"failure_pct": figure((100.0 * a["failed"] for a in att)),
                      "diagonality": figure(a["diagonality"] for a in att),
                      "focus_rate": figure(a["focus_rate"] for a in att),
                      "reasons": dict(sorted(reasons.items())),
                      "failed": [r["id"] for r in scored if r["attention"] is not None and r["attention"]["failed"]]},
        "kl_nats": figure(r["kl"] for r in scored),
        "speech_seconds": figure(r["speech_seconds"] for r in scored),
        "judge": judge_fig,
        "missing": missing, "bad": bad, "no_reference": no_reference, "bad_reference": bad_reference,
        "bad_attention": bad_attention, "no_label": no_label,
        "bad_prosody_reference": [f"{k}\t{v}" for k, v in sorted(measured.bad.items())],
        "utterances": scored,
    })


def write_report(report: Mapping[str, Any], path: PathLike) -> Path:
    """The report as JSON (atomic)."""
    from speechunits.io_utils import atomic_write_json

    atomic_write_json(Path(path), dict(report))
    return Path(path)


__all__ = ["evaluate_tts", "figure", "json_safe", "text_reference_id", "write_report"]
