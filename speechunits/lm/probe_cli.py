"""``speechunits lm-probe``: minimal-pair accuracy (ZeroSpeech 2021 lexical/syntactic) of LM scores.

Reads a gold.csv (:func:`speechunits.data.corpora.zr2021.read_gold`) and the scores of its
files, either ``lm-score``'s ``scores.jsonl`` (``id``, ``sum_logprob``, ``mean_logprob``;
``--score`` picks the field) or a ZeroSpeech submission file of ``<filename> <score>`` lines
(its ``zerospeech.txt``), then prints the accuracy with its 95% bootstrap interval and writes
the report (:func:`speechunits.eval.pair_accuracy.pair_accuracy`) as JSON.

``--score sum`` (the default, the ZeroSpeech submission) compares total log-probabilities,
which favours the shorter member of a pair; ``--score mean`` compares log-probability per
prediction, which removes that bias when the members differ in length (word-order pairs do
not, dropped or added words do).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from speechunits.data.corpora.zr2021 import TASKS, read_gold
from speechunits.data.jsonl import json_object_line
from speechunits.errors import ConfigError, DataError
from speechunits.eval.pair_accuracy import pair_accuracy
from speechunits.io_utils import atomic_write_json

SCORE_FIELDS = {"sum": "sum_logprob", "mean": "mean_logprob"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", required=True, type=Path, help="gold.csv of a ZeroSpeech 2021 dev set")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--scores", required=True, type=Path,
                        help="lm-score scores.jsonl, or '<filename> <score>' lines (zerospeech.txt)")
    parser.add_argument("--score", choices=tuple(SCORE_FIELDS), default="sum",
                        help="scores.jsonl field: sum_logprob or mean_logprob (default %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="report JSON")
    parser.add_argument("--num-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)


def _number(path: Path, lineno: int, value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(path, f"{what} is not a number: {value!r}", lineno) from None
    if not math.isfinite(number):
        raise DataError(path, f"{what} is not finite: {value!r}", lineno)
    return number


def read_scores(path: Path, score: str = "sum") -> dict[str, float]:
    """{filename: score} from a ``scores.jsonl`` (``.jsonl``) or a ``<filename> <score>`` text file."""
    if not path.is_file():
        raise DataError(path, "scores file does not exist")
    jsonl = path.suffix == ".jsonl"
    if not jsonl and score != "sum":
        raise ConfigError(path, f"--score {score} needs a scores.jsonl; a '<filename> <score>' file holds one score")
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            if jsonl:
                obj = json_object_line(path, lineno, raw)
                field = SCORE_FIELDS[score]
                if "id" not in obj or field not in obj:
                    raise DataError(path, f"expected fields 'id' and {field!r}, found {sorted(obj)}", lineno)
                name, value = str(obj["id"]), _number(path, lineno, obj[field], field)
            else:
                fields = raw.split()
                if len(fields) != 2:
                    raise DataError(path, f"expected '<filename> <score>', found {raw.strip()!r}", lineno)
                name, value = fields[0], _number(path, lineno, fields[1], "score")
            if name in out:
                raise DataError(path, f"file {name!r} scored twice", lineno)
            out[name] = value
    return out


def format_report(task: str, report: dict) -> str:
    """The printed summary: accuracy with its interval, then one line per type."""
    lines = [f"{task}: accuracy {report['accuracy']:.4f} (95% CI {report['ci_low']:.4f}-{report['ci_high']:.4f}) "
             f"over {report['n_ids']} ids, {report['n_pairs']} pairs"]
    for name, sub in report.get("by_type", {}).items():
        lines.append(f"  {name}: {sub['accuracy']:.4f} ({sub['ci_low']:.4f}-{sub['ci_high']:.4f}), {sub['n_ids']} ids")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    gold = read_gold(args.gold, args.task)
    scores = read_scores(args.scores, args.score)
    try:
        report = pair_accuracy(gold, scores, num_bootstrap=args.num_bootstrap, seed=args.seed)
    except DataError as err:
        raise DataError(args.scores, f"{err.problem} (gold {args.gold})") from None
    report.update(task=args.task, gold=str(args.gold.absolute()), scores=str(args.scores.absolute()),
                  score=args.score)
    atomic_write_json(args.out, report)
    print(format_report(args.task, report))
    return 0
