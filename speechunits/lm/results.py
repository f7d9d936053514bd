"""The tokenizer comparison of ``lm/run.sh``: one row per tokenizer, read from the files its stages wrote.

Per tokenizer ``T`` under the experiment directory:

* ``T/packed/<train>.json`` and ``T/packed/<test>.json``: tokens and audio seconds (tokens per second);
* ``T/scores/{lm,ngram}/<test>/summary.json`` for every test set: held-out perplexity per token and
  per second (the first test set fills the main table, every set the per-set table);
* ``T/probes/{lm,ngram}.{lexical,syntactic}.json``: pair accuracy with its bootstrap CI;
* ``T/scores/{lm,ngram}/{lexical,syntactic}/scores.jsonl`` with the gold file the probe report names:
  the *paired* comparison LM minus n-gram (per pair id, bootstrapped over ids), which says whether
  the Transformer beats the n-gram on the same items rather than comparing two overlapping CIs;
* ``T/lm/metrics.jsonl``: training wall time (the sum of the gaps between consecutive training log
  rows, gaps over ten minutes, i.e. a kill and a later resume, left out) and tokens per second.

A missing file leaves its cells empty ("-"), so a partial run still gives a table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.data.corpora.zr2021 import read_gold
from speechunits.eval.pair_accuracy import paired_difference
from speechunits.features.spectrogram_plot import plot_spectrograms
from speechunits.lm.probe_cli import read_scores

PathLike = str | os.PathLike[str]
PROBE_TASKS = ("lexical", "syntactic")
MODELS = ("lm", "ngram")
RESUME_GAP_S = 600.0
CHANCE = 0.5


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def training_time(metrics_path: Path) -> dict[str, float] | None:
    """Wall seconds, steps and mean tokens/s of a training run from its ``metrics.jsonl``."""
    try:
        rows = [json.loads(x) for x in metrics_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    train = [r for r in rows if "train/items_per_s" in r]
    if not train:
        return None
    times = np.array([r["time"] for r in train], dtype=np.float64)
    gaps = np.diff(times)
    per_step = float(np.median(gaps / np.maximum(np.diff([r["step"] for r in train]), 1))) if len(gaps) else 0.0
    first_step = train[0]["step"]
    wall = float(gaps[gaps <= RESUME_GAP_S].sum()) + per_step * first_step  # the steps before the first log row
    return {"wall_s": wall, "steps": float(train[-1]["step"]),
            "tokens_per_s": float(np.mean([r["train/items_per_s"] for r in train]))}


def paired_difference_files(gold: Path, task: str, scores_a: Path, scores_b: Path, score: str) -> dict[str, float]:
    """:func:`~speechunits.eval.pair_accuracy.paired_difference` of two ``lm-score`` outputs on one gold file."""
    return paired_difference(read_gold(gold, task), read_scores(scores_a, score), read_scores(scores_b, score))


@dataclass
class TokenizerRow:
    """Everything the table shows for one tokenizer (None: not measured)."""

    name: str
    train_tokens: int | None = None
    train_seconds: float | None = None
    test_tokens_per_s: dict[str, float] = field(default_factory=dict)  # test set -> tokens per second of audio
    perplexity: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # set -> model -> summary.json
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "lm.lexical" -> report
    paired: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> LM minus n-gram
    training: dict[str, float] | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.train_tokens is None or not self.train_seconds:
            return None
        return self.train_tokens / self.train_seconds


def collect_row(exp_dir: Path, name: str, train_set: str, test_sets: list[str]) -> TokenizerRow:
    """Read one tokenizer's outputs."""
    base = exp_dir / name
    row = TokenizerRow(name)
    train = _read_json(base / "packed" / f"{train_set}.json")
    if train:
        row.train_tokens, row.train_seconds = int(train["num_tokens"]), float(train["audio_seconds"])
    for test_set in test_sets:
        test = _read_json(base / "packed" / f"{test_set}.json")
        if test and test.get("audio_seconds"):
            row.test_tokens_per_s[test_set] = float(test["num_tokens"]) / float(test["audio_seconds"])
        for model in MODELS:
            summary = _read_json(base / "scores" / model / test_set / "summary.json")
            if summary:
                row.perplexity.setdefault(test_set, {})[model] = summary
    for model in MODELS:
        for task in PROBE_TASKS:
            report = _read_json(base / "probes" / f"{model}.{task}.json")
            if report:
                row.probes[f"{model}.{task}"] = report
    for task in PROBE_TASKS:
        lm, ng = row.probes.get(f"lm.{task}"), row.probes.get(f"ngram.{task}")
        if lm and ng and lm.get("gold"):
            row.paired[task] = paired_difference_files(Path(lm["gold"]), task,
                                                       base / "scores" / "lm" / task / "scores.jsonl",
                                                       base / "scores" / "ngram" / task / "scores.jsonl",
                                                       lm.get("score", "sum"))
    row.training = training_time(base / "lm" / "metrics.jsonl")
    return row


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _acc(report: dict[str, Any] | None) -> str:
    if not report:
        return "-"
    return f"{100 * report['accuracy']:.1f} [{100 * report['ci_low']:.1f}, {100 * report['ci_high']:.1f}]"


def _verdicts(rows: list[TokenizerRow]) -> list[str]:
    lines = []
    for r in rows:
        for task in PROBE_TASKS:
            rep = r.probes.get(f"lm.{task}")
            if not rep:
                continue
            chance = ("beats chance (CI above 50 %)" if rep["ci_low"] > CHANCE else
                      "is below chance (CI under 50 %)" if rep["ci_high"] < CHANCE else
                      "does not beat chance (CI contains 50 %)")
            text = f"- **{r.name}**, {task}: the LM {chance}"
            d = r.paired.get(task)
            if d:
                versus = ("beats the n-gram" if d["ci_low"] > 0 else "is beaten by the n-gram" if d["ci_high"] < 0
                          else "is not distinguishable from the n-gram")
                text += (f"; paired over the same {d['n_ids']} items it {versus} "
                         f"(LM - n-gram {100 * d['difference']:+.1f} points, 95 % CI "
                         f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}])")
            lines.append(text + ".")
    return lines


def _per_set_table(rows: list[TokenizerRow], test_sets: list[str]) -> list[str]:
    """Held-out figures of every test set: tokens/s, LM and n-gram perplexity per token, LM bits per second."""
    lines = ["## Held-out sets", "", "| tokenizer | set | tokens/s of audio | LM ppl/token | LM bits/s | n-gram ppl/token "
             "| n-gram bits/s |", "|" + "---|" * 7]
    for r in rows:
        for t in test_sets:
            lm, ng = r.perplexity.get(t, {}).get("lm", {}), r.perplexity.get(t, {}).get("ngram", {})
            lines.append(f"| {r.name} | {t} | {_num(r.test_tokens_per_s.get(t))} | {_num(lm.get('ppl_per_token'))} "
                         f"| {_num(lm.get('bits_per_second'), '{:.1f}')} | {_num(ng.get('ppl_per_token'))} "
                         f"| {_num(ng.get('bits_per_second'), '{:.1f}')} |")
    return [*lines, ""]


def _subtype_table(rows: list[TokenizerRow]) -> list[str]:
    """sBLIMP-style accuracy per subtype, LM and n-gram: where length or order decides, not the type mean."""
    subtypes = sorted({k for r in rows for m in MODELS for k in (r.probes.get(f"{m}.syntactic") or {}).get("by_subtype", {})})
    if not subtypes:
        return []
    lines = ["## sBLIMP-style accuracy by subtype (%)", "",
             "| tokenizer | model | " + " | ".join(subtypes) + " |", "|" + "---|" * (2 + len(subtypes))]
    for r in rows:
        for m in MODELS:
            by = (r.probes.get(f"{m}.syntactic") or {}).get("by_subtype", {})
            if by:
                cells = [_num(100 * by[k]["accuracy"], "{:.1f}") if k in by else "-" for k in subtypes]
                lines.append(f"| {r.name} | {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def results_markdown(rows: list[TokenizerRow], *, test_sets: list[str], train_set: str, token_budget: int | None,
                     probe_counts: dict[str, int]) -> str:
    """RESULTS.md: the table, the verdicts, and how to read them."""
    head = ("| tokenizer | tokens/s of audio | train tokens | LM ppl/token | LM ppl/s (bits/s) | n-gram ppl/token "
            "| sWUGGY LM % [95 % CI] | sWUGGY n-gram % | sBLIMP LM % [95 % CI] | sBLIMP n-gram % "
            "| training wall (s) | training tokens/s |")
    test_set = test_sets[0]
    lines = ["# Unit LMs over three tokenizers of the same audio", "",
             f"Training set `{train_set}`, held-out perplexity on `{test_set}`"
             + (f", {token_budget:,} training tokens per LM (equal budget)" if token_budget else "") + ". "
             f"Probes: {probe_counts.get('lexical', 0)} sWUGGY-style and {probe_counts.get('syntactic', 0)} "
             "sBLIMP-style pairs; chance is 50 %.", "", head, "|" + "---|" * 12]
    for r in rows:
        lm, ng = r.perplexity.get(test_set, {}).get("lm", {}), r.perplexity.get(test_set, {}).get("ngram", {})
        ppl_s = (f"{_num(lm.get('ppl_per_second'), '{:.3g}')} ({_num(lm.get('bits_per_second'), '{:.1f}')})"
                 if lm else "-")
        lines.append(
            f"| {r.name} | {_num(r.tokens_per_s)} | {_num(r.train_tokens, '{:,}')} | {_num(lm.get('ppl_per_token'))} "
            f"| {ppl_s} | {_num(ng.get('ppl_per_token'))} | {_acc(r.probes.get('lm.lexical'))} "
            f"| {_acc(r.probes.get('ngram.lexical'))} | {_acc(r.probes.get('lm.syntactic'))} "
            f"| {_acc(r.probes.get('ngram.syntactic'))} | {_num(r.training['wall_s'] if r.training else None, '{:.0f}')} "
            f"| {_num(r.training['tokens_per_s'] if r.training else None, '{:.0f}')} |")
    lines += ["", "## Verdicts", "", *(_verdicts(rows) or ["- no probe reports yet."]), "",
              *_per_set_table(rows, test_sets), *_subtype_table(rows),
              "## How to read it", "",
              "- Perplexity per token is not comparable across tokenizers (their vocabularies and token rates "
              "differ); perplexity per second of audio (`exp(total NLL / seconds)`, with bits per second) is.",
              "- Probe accuracy follows the ZeroSpeech 2021 rule (1 when the correct member scores higher, 0.5 on "
              "a tie, averaged over voices per item, then over items); the interval is a 95 % percentile "
              "bootstrap over items. The paired LM - n-gram difference resamples the same items for both.",
              "- With summed log-probabilities (`--probe-score sum`) a member with fewer tokens is favoured: "
              "subtypes whose ungrammatical member is longer (`doubled`) or shorter (`dropped`) than the grammatical "
              "one measure length as much as grammar; the subtype table shows it.",
              "- Training wall time is the LM only (the n-gram trains in seconds)."]
    return "\n".join(lines) + "\n"


def continuation_section(cont_dir: Path, figure: Path, num_utts: int) -> str:
    """A RESULTS.md section on ``lm-continue``'s output: counts, and a spectrogram figure of the first
    ``num_utts`` prompts (real audio, vocoded) against their vocoded continuations."""
    listing = [json.loads(x) for x in (cont_dir / "continuations.jsonl").read_text(encoding="utf-8").splitlines()]
    new = [len(x["new_units"]) for x in listing]
    panels = []
    for item in listing[:num_utts]:
        wav = cont_dir / "synth" / "wav"
        for label, path in (("prompt (real)", cont_dir / "prompts" / f"{item['id']}.wav"),
                            ("prompt (vocoded)", next(wav.glob(f"{item['id']}.prompt.*"), None)),
                            ("+ continuation", next(wav.glob(f"{item['id']}.continued.*"), None))):
            if path is not None and path.is_file():
                panels.append((f"{item['id']}\n{label}", path))
    lines = ["", "## Spoken continuation", "",
             f"{len(listing)} prompts of `{cont_dir}`; sampled tokens per continuation: mean {np.mean(new):.1f}, "
             f"min {min(new)}, max {max(new)} (fewer than `--max-new-tokens` when the LM ended the sentence). "
             "Real prompts in `prompts/`, vocoded prompts and continuations in `synth/wav/`."]
    if panels:
        plot_spectrograms(panels, figure, title="prompt, vocoded prompt, vocoded prompt + LM continuation")
        lines += ["", f"![continuation spectrograms]({figure.name})"]
    return "\n".join(lines) + "\n"
