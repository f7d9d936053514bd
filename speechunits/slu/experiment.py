"""What every method of one class-incremental SLU experiment shares: the examples, the class
split and the tokenizer (:func:`prepare_experiment`, ``speechunits slu-cil --prepare-only``).

Methods are only comparable when they see the same classes in the same tasks and predict
the same token ids, so both are built once per experiment directory, from the training
split of all classes: ``<out>/split.json`` (a later run whose data or config gives another
split is refused, not silently re-split) and ``<out>/tokenizer/bpe.model`` (rebuilt only
when its provenance, i.e. vocabulary size, transcripts or classes, changes). Test and valid
examples of classes never seen in training are dropped with a warning.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from speechunits.data.jsonl import load_manifest
from speechunits.errors import ConfigError, ManifestError
from speechunits.io_utils import atomic_write_json, sha256_json
from speechunits.provenance import is_complete, write_provenance
from speechunits.slu.config import CILConfig
from speechunits.slu.data import SLUExample, examples_from_utterances
from speechunits.slu.tasks import ClassIncrementalSplit, class_order_by_frequency, make_benchmark, split_classes, split_from_dict
from speechunits.slu.tokenizer import SLUTokenizer, normalize_transcript, train_tokenizer

PathLike = str | os.PathLike[str]

SPLIT_NAME = "split.json"
TOKENIZER_PATH = "tokenizer/bpe.model"


@dataclass
class CILData:
    """One experiment's examples (test/valid: classes seen in training only), split and tokenizer."""

    train: list[SLUExample]
    test: list[SLUExample]
    valid: list[SLUExample]
    split: ClassIncrementalSplit
    tokenizer: SLUTokenizer

    @property
    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.split.classes)}


def load_examples(data_dir: PathLike, name: str, cfg: CILConfig) -> list[SLUExample]:
    """Examples of ``<data_dir>/<name>`` (a Kaldi data dir, or ``<name>.jsonl``)."""
    base = Path(data_dir)
    path = base / name
    if not path.exists() and (base / f"{name}.jsonl").is_file():
        path = base / f"{name}.jsonl"
    if not path.exists():
        raise ManifestError(path, f"data set {name!r} not found (expected a Kaldi data dir or {name}.jsonl under {base})")
    examples = examples_from_utterances(load_manifest(path), cfg.corpus, cfg.slurp_level)
    if cfg.targets == "entities":
        examples = [with_entity_target(ex, path) for ex in examples]
    # FSC's action "change language" holds a space, which an intent token cannot (tokenizer.py)
    return [replace(ex, label=label_token(ex.label)) if " " in ex.label else ex for ex in examples]


def with_entity_target(ex: SLUExample, source: Path) -> SLUExample:
    """``ex`` whose transcript is SLURP's ``sentence_annotation`` (inline ``[type : filler]``
    entities), the target of ``targets: entities``; the plain sentence stays in ``extra``."""
    annotation = ex.extra.get("sentence_annotation")
    if not isinstance(annotation, str) or not annotation.strip():
        raise ManifestError(source, f"utterance {ex.id!r} has no sentence_annotation (needed by targets=entities)")
    return replace(ex, transcript=annotation, extra={**ex.extra, "sentence": ex.transcript})


def label_token(label: str) -> str:
    """A class label usable as one intent token: whitespace runs become ``-``
    (FSC ``change language_German_none`` -> ``change-language_German_none``)."""
    return "-".join(label.split())


def make_split(cfg: CILConfig, train_labels: Sequence[str]) -> ClassIncrementalSplit:
    """The configured split: a named benchmark, or the training classes by frequency cut into ``num_tasks``."""
    if cfg.benchmark == "frequency":
        assert cfg.num_tasks
        return split_classes(class_order_by_frequency(train_labels), cfg.num_tasks, name=f"frequency-{cfg.num_tasks}")
    return make_benchmark(cfg.benchmark, train_labels)


def prepare_experiment(cfg: CILConfig, data_dir: PathLike, out_dir: PathLike) -> CILData:
    """Load the splits; build (or reuse) ``split.json`` and the BPE tokenizer in ``out_dir``."""
    out = Path(out_dir)
    train = load_examples(data_dir, cfg.splits["train"], cfg)
    test = load_examples(data_dir, cfg.splits["test"], cfg)
    valid = load_examples(data_dir, cfg.splits["valid"], cfg) if cfg.eval_valid and cfg.splits.get("valid") else []
    split_path = out / SPLIT_NAME
    split = make_split(cfg, [ex.label for ex in train])
    if split_path.is_file():
        stored = split_from_dict(json.loads(split_path.read_text(encoding="utf-8")))
        if stored != split:
            raise ConfigError(split_path, f"stored class split {stored.to_dict()} differs from the one of this data/config {split.to_dict()}; "
                                          "use another --out-dir or remove the file")
    else:
        atomic_write_json(split_path, split.to_dict())
    known = set(split.classes)
    for name, exs in (("test", test), ("valid", valid)):
        extra = sorted({ex.label for ex in exs} - known)
        if extra:
            print(f"warning: {len(extra)} {name} classes never seen in training are ignored: {extra[:5]}", file=sys.stderr)
    test = [ex for ex in test if ex.label in known]
    valid = [ex for ex in valid if ex.label in known]
    tok_path = out / TOKENIZER_PATH
    tok_cfg = {"stage": "slu-tokenizer", "vocab_size": cfg.vocab_size, "transcripts": sha256_json(sorted(normalize_transcript(ex.transcript) for ex in train)),
               "classes": sorted(known)}
    if is_complete(tok_path.parent, tok_cfg):
        tokenizer = SLUTokenizer(tok_path)
    else:
        tokenizer = train_tokenizer([ex.transcript for ex in train], sorted(known), tok_path, vocab_size=cfg.vocab_size)
        write_provenance(tok_path.parent, tok_cfg)
    return CILData(train, test, valid, split, tokenizer)
