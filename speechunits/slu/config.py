"""The schema of a class-incremental SLU experiment (``speechunits slu-cil --config``).

One dataclass tree, :class:`CILConfig`, loaded as defaults <- YAML <- ``key=value``
overrides by :func:`load_cil_config` and validated there, at load time: a wrong corpus,
benchmark, encoder type, loss name or Trainer key fails before any data is read, with the
file (or ``<command line>``) it came from. :func:`config_dict` is the plain-dict form that
the task loop hashes to decide whether a finished task is still valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from speechunits.config import load_structured
from speechunits.errors import ConfigError
from speechunits.slu.encoders import ENCODERS
from speechunits.slu.objective import CoconutWeights
from speechunits.slu.tasks import BENCHMARKS
from speechunits.train.config import load_config

PathLike = str | os.PathLike[str]


@dataclass
class MemoryConfig:
    budget: Optional[int] = None  # absolute budget; null: fraction of the whole training set
    fraction: float = 0.01
    selection: str = "herding"  # random | herding


@dataclass
class DecodeConfig:
    beam_size: int = 5  # 1: greedy (batched)
    length_penalty: float = 1.0
    max_len: int = 64
    batch_size: int = 32


@dataclass
class FirstTaskConfig:
    """How task 0 is trained. ``shared``: once per seed, with cross-entropy only, into
    ``<out>/task0/seed<k>/``, and every non-joint run of that seed starts task 1 from it (so no
    method's lead comes from faster first-task learning). ``until_plateau``: train epoch by
    epoch (constant LR after warmup) until the valid accuracy on the task-0 classes has not
    improved by ``min_delta`` for ``patience`` epochs (and at least ``min_epochs`` were
    trained: a model from scratch can sit at chance for a while), or ``max_epochs``; otherwise
    ``epochs`` (default: ``epochs_per_task``)."""

    shared: bool = False
    until_plateau: bool = False
    min_epochs: int = 10
    max_epochs: int = 60
    patience: int = 3
    min_delta: float = 0.005
    epochs: Optional[int] = None


@dataclass
class ModelConfig:
    encoder: Dict[str, Any] = field(default_factory=lambda: {"type": "mel_conformer"})  # type + kwargs
    d_model: int = 768
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 3072
    dropout: float = 0.1
    proj_dim: int = 128
    proj_hidden: int = 512


@dataclass
class CILConfig:
    """The whole experiment; ``train`` holds :class:`~speechunits.train.TrainConfig` keys."""

    corpus: str = "fsc"  # fsc | slurp
    benchmark: str = "fsc-6"  # one of tasks.BENCHMARKS, or "frequency" (with num_tasks)
    num_tasks: Optional[int] = None
    slurp_level: str = "scenario"
    targets: str = "transcript"  # transcript | entities (SLURP: the transcript with inline [type : filler] entities; SLU-F1)
    splits: Dict[str, str] = field(default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"})
    seed: int = 0
    vocab_size: int = 1000
    epochs_per_task: int = 10
    joint_epochs: Optional[int] = None  # default: epochs_per_task
    batch_size: int = 32
    eval_valid: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: Dict[str, Any] = field(default_factory=lambda: {"nspt": 0.1, "mm": 0.1, "kd": 1.0})  # CoconutWeights fields
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    first_task: FirstTaskConfig = field(default_factory=FirstTaskConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: Dict[str, Any] = field(default_factory=dict)


def load_cil_config(path: PathLike | None = None, overrides: Sequence[str] = ()) -> CILConfig:
    """Defaults <- YAML ``path`` <- ``key=value`` overrides; ConfigError names the source."""
    cfg = load_structured(CILConfig, path, overrides)
    _validate(cfg, str(path) if path is not None else "<config>")
    return cfg


def _validate(cfg: CILConfig, source: str) -> None:
    if cfg.corpus not in ("fsc", "slurp"):
        raise ConfigError(source, f"corpus={cfg.corpus!r}: expected fsc | slurp")
    if cfg.targets not in ("transcript", "entities"):
        raise ConfigError(source, f"targets={cfg.targets!r}: expected transcript | entities")
    if cfg.targets == "entities" and cfg.corpus != "slurp":
        raise ConfigError(source, "targets=entities needs corpus=slurp (the entity annotation is SLURP's sentence_annotation)")
    if cfg.benchmark != "frequency" and cfg.benchmark.lower() not in BENCHMARKS:
        raise ConfigError(source, f"benchmark={cfg.benchmark!r}: expected one of {', '.join(BENCHMARKS)} or 'frequency'")
    if cfg.benchmark == "frequency" and not cfg.num_tasks:
        raise ConfigError(source, "benchmark=frequency needs num_tasks")
    if cfg.memory.selection not in ("random", "herding"):
        raise ConfigError(source, f"memory.selection={cfg.memory.selection!r}: expected random | herding")
    kind = cfg.model.encoder.get("type")
    if not isinstance(kind, str) or kind not in ENCODERS:
        raise ConfigError(source, f"model.encoder.type={cfg.model.encoder.get('type')!r}: expected one of {', '.join(ENCODERS)}")
    if cfg.model.encoder.get("type") == "units":
        _validate_units(cfg.model.encoder, source)
    ft = cfg.first_task
    if ft.until_plateau and not ft.shared:
        raise ConfigError(source, "first_task.until_plateau needs first_task.shared=true (the plateaued task-0 model is "
                                  "trained once and shared by every method)")
    if ft.until_plateau and not (cfg.eval_valid and cfg.splits.get("valid")):
        raise ConfigError(source, "first_task.until_plateau needs a valid split (splits.valid, eval_valid=true): "
                                  "the plateau is measured there, never on the test split")
    if ft.max_epochs < 1 or ft.patience < 1 or (ft.epochs is not None and ft.epochs < 1):
        raise ConfigError(source, f"first_task: max_epochs, patience and epochs must be >= 1, found {ft}")
    if not 0 <= ft.min_epochs <= ft.max_epochs:
        raise ConfigError(source, f"first_task.min_epochs={ft.min_epochs}: expected 0 <= min_epochs <= max_epochs")
    if not 0.0 <= cfg.memory.fraction <= 1.0:
        raise ConfigError(source, f"memory.fraction={cfg.memory.fraction}: expected a value in [0, 1]")
    for key in ("epochs_per_task", "batch_size", "vocab_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(source, f"{key}={getattr(cfg, key)}: expected an integer >= 1")
    if cfg.decode.beam_size < 1:
        raise ConfigError(source, f"decode.beam_size={cfg.decode.beam_size}: expected >= 1")
    unknown = set(cfg.losses) - set(CoconutWeights.__dataclass_fields__)
    if unknown:
        raise ConfigError(source, f"unknown losses keys {sorted(unknown)}; known: {sorted(CoconutWeights.__dataclass_fields__)}")
    for split in ("train", "test"):
        if split not in cfg.splits:
            raise ConfigError(source, f"splits must name the {split!r} data set")
    try:
        load_config(None, (), base={**cfg.train, "max_steps": 1})
    except ConfigError as err:
        raise ConfigError(source, f"train: {err.problem}") from err


def _validate_units(encoder: Dict[str, Any], source: str) -> None:
    """``type: units`` reads unit sets from ``units_dir``; their codebook gives the vocabulary."""
    units_dir = encoder.get("units_dir")
    if not units_dir:
        raise ConfigError(source, "model.encoder.type=units needs model.encoder.units_dir (the directory of the unit sets, "
                                  "one per data set: <units_dir>/<set name>/)")
    if not os.path.isdir(str(units_dir)):
        raise ConfigError(source, f"model.encoder.units_dir={units_dir!r}: not a directory")
    for key in ("vocab_size", "pad_id", "embedding_dim"):
        if encoder.get(key) is not None:
            raise ConfigError(source, f"model.encoder.{key}: not a setting of the units encoder "
                                      "(the codebook size and pad id come from the unit sets' meta.json)")


def config_dict(cfg: CILConfig) -> dict[str, Any]:
    """``cfg`` as plain nested dicts and lists (what is hashed and stored)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
