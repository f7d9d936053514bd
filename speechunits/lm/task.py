"""The unit LM training task for the shared Trainer (``speechunits train-lm``).

Data: packed token sets (:mod:`speechunits.lm.packed`). A sequence ``t_1..t_n`` becomes the
input ``BOS t_1..t_n`` and the target ``t_1..t_n EOS`` (n + 1 predictions). A sequence with
more than ``task.max_len`` predictions is cut to a window of ``max_len`` at an offset drawn
from ``(data_seed, epoch)``, so a resumed run sees the same windows.

Batching: per epoch, sequences are sorted by length with a seeded jitter, grouped so that
each batch's padded size (longest * count) stays within ``task.batch_tokens``, the batches
shuffled with the same seed, and dealt to the ranks round-robin after truncating to a multiple
of the world size (every rank steps the same number of times, which DDP needs). All of it is a
function of ``(data_seed, epoch, rank)``, so the Trainer's resume skips exactly the consumed
batches (``batches(epoch, start=k)`` skips them without building them).

The loss is the mean next-token NLL over the micro-batch's real targets (BOS never a target,
see :func:`~speechunits.lm.model.next_token_logprobs`); ``num_items`` is the number of target
tokens, so the Trainer's throughput figure is tokens/s. Validation scores the whole valid set
through :mod:`speechunits.lm.scoring` (full sequences, not windows) on rank 0: the same numbers
``lm-score`` prints; each new best is exported to ``model.best.pt`` beside the run's checkpoints
(its step and NLL are task state, so a resumed run keeps comparing against them). Precision, compile, DDP and resume come from the Trainer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.data.batching import pack_by_frames
from speechunits.errors import ConfigError
from speechunits.lm.model import UnitLM, UnitLMConfig, bos_id, eos_id, next_token_logprobs
from speechunits.lm.model_io import save_lm
from speechunits.lm.packed import PackedTokens
from speechunits.lm.scoring import TransformerScorer, corpus_summary, score_packed
from speechunits.lm.tokens import check_compatible
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.wrap import unwrap_model

BEST_MODEL_NAME = "model.best.pt"
"""The model at the step of the lowest validation NLL so far (written by rank 0 during training)."""

DEFAULTS: dict[str, Any] = {
    "train": None,  # packed set prefix (speechunits lm-pack)
    "valid": None,
    "batch_tokens": 8192,  # padded tokens per micro-batch and rank
    "max_len": 512,  # predictions per training window (longer sequences: a random window)
    "model": {},  # UnitLMConfig keys except vocab_size and max_len (d_model, n_layers, n_heads, d_ff, dropout, ...)
    "valid_max_sequences": None,  # score only the first N valid sequences
    "data_seed": 1234,
    "length_jitter": 0.1,
}


def task_options(config: TrainConfig) -> dict[str, Any]:
    unknown = set(config.task) - set(DEFAULTS)
    if unknown:
        raise ConfigError(None, f"unknown lm task options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **config.task}
    if not opts["train"]:
        raise ConfigError(None, "train-lm needs task.train=PACKED_PREFIX")
    if int(opts["batch_tokens"]) < int(opts["max_len"]):
        raise ConfigError(None, f"task.batch_tokens={opts['batch_tokens']} must be >= task.max_len={opts['max_len']}")
    return opts


class TokenBatches:
    """Epoch -> this rank's batches of (sequence index, window offset); see the module docstring."""

    def __init__(self, lengths: np.ndarray, max_len: int, batch_tokens: int, dist: DistInfo, seed: int,
                 jitter: float = 0.1) -> None:
        self.predictions = np.asarray(lengths, dtype=np.int64) + 1  # n tokens -> n + 1 predictions
        self.max_len, self.batch_tokens = int(max_len), int(batch_tokens)
        self.dist, self.seed, self.jitter = dist, int(seed), float(jitter)

    def epoch(self, epoch: int) -> list[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        width = np.minimum(self.predictions, self.max_len)
        offsets = (rng.random(len(width)) * (self.predictions - width + 1)).astype(np.int64)
        keys = width * (1.0 + self.jitter * rng.random(len(width)))
        order = np.argsort(keys, kind="stable").tolist()
        batches = [[(i, int(offsets[i])) for i in b] for b in pack_by_frames(order, width.tolist(), self.batch_tokens)]
        rng.shuffle(batches)  # type: ignore[arg-type]
        world = self.dist.world_size
        usable = len(batches) // world * world
        if usable == 0:
            raise ConfigError(None, f"{len(batches)} batch(es) cannot be split over {world} ranks: "
                                    f"lower task.batch_tokens")
        return batches[self.dist.rank:usable:world]


def collate(data: PackedTokens, batch: list[tuple[int, int]], max_len: int, bos: int, eos: int) -> dict[str, Any]:
    """Inputs (BOS + tokens) and targets (tokens + EOS), right padded; pads of the target are -100."""
    rows = []
    for i, offset in batch:
        seq = data[i]
        full = np.concatenate(([bos], seq, [eos]))
        rows.append(full[offset:offset + min(len(seq) + 1, max_len) + 1])
    width = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), width), eos, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for k, r in enumerate(rows):
        t = torch.from_numpy(np.ascontiguousarray(r, dtype=np.int64))
        inputs[k, :len(r) - 1] = t[:-1]
        targets[k, :len(r) - 1] = t[1:]
    return {"tokens": inputs, "targets": targets, "ids": [data.items[i].id for i, _ in batch],
            "num_tokens": int(sum(len(r) - 1 for r in rows))}


def steps_for_budget(config: TrainConfig, budget: int, world_size: int = 1) -> int:
    """Optimizer steps that train on about ``budget`` target tokens in all (every rank, every
    accumulated micro-batch): the real (unpadded) tokens of an average batch of epoch 0's
    batching, so tokenizers with short and long sequences get the same number of training tokens."""
    o = task_options(config)
    data = PackedTokens(o["train"])
    sampler = TokenBatches(data.lengths, int(o["max_len"]), int(o["batch_tokens"]), DistInfo(),
                           int(o["data_seed"]), float(o["length_jitter"]))
    batches = sampler.epoch(0)
    width = np.minimum(sampler.predictions, sampler.max_len)
    per_step = float(width.sum()) / len(batches) * world_size * config.accum_steps
    return max(1, math.ceil(budget / per_step))


class LMTask:
    """Next-token training of a :class:`~speechunits.lm.model.UnitLM` on a packed set."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.dist = dist or DistInfo()
        self.opts = o = task_options(config)
        self.train_data = PackedTokens(o["train"])
        self.valid_data = PackedTokens(o["valid"]) if o["valid"] else None
        if self.valid_data is not None:
            if self.valid_data.vocab_size != self.train_data.vocab_size:
                raise ConfigError(None, f"task.train ({o['train']}) has {self.train_data.vocab_size} token ids but "
                                        f"task.valid ({o['valid']}) has {self.valid_data.vocab_size}")
            check_compatible(self.train_data.producer, self.valid_data.producer,
                            f"task.train ({o['train']})", f"task.valid ({o['valid']})")
        model_opts = dict(o["model"] or {})
        if {"vocab_size", "max_len"} & set(model_opts):
            raise ConfigError(None, "task.model.vocab_size/max_len come from the data and task.max_len; remove them")
        self.cfg = UnitLMConfig(vocab_size=self.train_data.vocab_size + 2, max_len=int(o["max_len"]), **model_opts)
        self.model = UnitLM(self.cfg)
        self.bos, self.eos = bos_id(self.cfg), eos_id(self.cfg)
        self.sampler = TokenBatches(self.train_data.lengths, int(o["max_len"]), int(o["batch_tokens"]), self.dist,
                                    int(o["data_seed"]), float(o["length_jitter"]))
        self.best_path = Path(config.out_dir) / BEST_MODEL_NAME
        self.best_nll, self.best_step = math.inf, -1

    # ------------------------------------------------------------------ Trainer hooks
    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        for batch in self.sampler.epoch(epoch)[start:]:
            yield collate(self.train_data, batch, self.cfg.max_len, self.bos, self.eos)

    def num_items(self, batch: dict[str, Any]) -> int:
        return int(batch["num_tokens"])

    def batch_ids(self, batch: dict[str, Any]) -> list[str]:
        return list(batch["ids"])

    def training_step(self, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, float]]:
        logp = next_token_logprobs(self.model(batch["tokens"]))
        loss = torch.nn.functional.nll_loss(logp.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100)
        return loss, {"nll_per_token": float(loss.detach())}

    def validate(self, step: int) -> dict[str, float]:
        """Corpus figures of the valid set (rank 0; the other ranks return nothing). A new best
        ``nll_per_token`` is also exported to ``<out_dir>/model.best.pt``: a run longer than its data
        supports overfits, and the last step is then not the model to score."""
        if not self.dist.is_main or self.valid_data is None:
            return {}
        model: UnitLM = unwrap_model(self.model)  # type: ignore[assignment]
        scorer = TransformerScorer(model, self.train_data.producer, batch_tokens=int(self.opts["batch_tokens"]))
        s = corpus_summary(score_packed(scorer, self.valid_data, max_sequences=self.opts["valid_max_sequences"]))
        if s["nll_per_token"] < self.best_nll:
            self.best_nll, self.best_step = float(s["nll_per_token"]), step
            self.export(self.best_path, step=step)
        out = {"nll_per_token": s["nll_per_token"], "ppl": s["ppl_per_token"], "best_step": float(self.best_step)}
        if math.isfinite(s["bits_per_second"]):  # a set without durations has no per-second figure
            out["bits_per_second"] = s["bits_per_second"]
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"best_nll": self.best_nll, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_nll = float(state.get("best_nll", math.inf))
        self.best_step = int(state.get("best_step", -1))

    def export(self, path: str | Path, step: int | None = None) -> None:
        save_lm(path, unwrap_model(self.model), self.train_data.producer, step)  # type: ignore[arg-type]


__all__ = ["BEST_MODEL_NAME", "DEFAULTS", "LMTask", "TokenBatches", "collate", "steps_for_budget", "task_options"]
