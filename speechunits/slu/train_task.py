"""The SLU ``TrainTask`` for one class-incremental task: a thin adapter of
:class:`speechunits.slu.objective.CoconutObjective` to the shared Trainer.

Data of a task = this task's training examples + the rehearsal memory, concatenated; the
batches of an epoch come from a permutation drawn from a generator seeded by ``(seed, epoch)``
(sorted by length within pools of batches, to limit padding), so they are the same on a
resumed run. Each batch says which rows are rehearsal samples
(``is_memory``: anchors of NSPT, excluded from MM with ``mm_on="new"``) and, for
sequence-level KD, carries the previous-task teacher's hypotheses of those rows.

Methods (:data:`METHODS`) are switches over the same objective and the same memory budget:

==========  ======  =================================================
method      memory  loss
==========  ======  =================================================
ft          no      CE (fine-tuning, lower bound)
er          yes     CE (experience replay)
er_kd       yes     CE + w_kd seq-KD on the memory
coconut     yes     CE + w_nspt NSPT + w_mm MM
coconut_kd  yes     CE + w_nspt NSPT + w_mm MM + w_kd seq-KD
joint       no      CE on all classes at once, one task (upper bound)
==========  ======  =================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from speechunits.errors import ConfigError
from speechunits.slu.data import SLUBatch, SLUExample, decoder_io
from speechunits.slu.inputs import InputSource
from speechunits.slu.losses import seq_kd_targets
from speechunits.slu.objective import CoconutObjective, CoconutWeights
from speechunits.slu.tokenizer import SLUTokenizer
from speechunits.train.distributed import DistInfo


@dataclass(frozen=True)
class MethodSpec:
    """What a continual-learning method switches on."""

    name: str
    memory: bool  # rehearsal memory concatenated to the task data
    nspt: bool
    mm: bool
    kd: bool
    joint: bool = False  # all classes in one task

    def weights(self, base: CoconutWeights) -> CoconutWeights:
        """``base`` with the losses this method does not use set to 0, and their settings
        (temperature, ``mm_on``) at the defaults: what a method trains with, and so what its
        tasks' identity holds (a temperature chosen for COCONUT does not redo ER's tasks)."""
        default = CoconutWeights()
        return CoconutWeights(
            nspt=base.nspt if self.nspt else 0.0,
            mm=base.mm if self.mm else 0.0,
            kd=base.kd if self.kd else 0.0,
            nspt_temperature=base.nspt_temperature if self.nspt else default.nspt_temperature,
            mm_temperature=base.mm_temperature if self.mm else default.mm_temperature,
            mm_on=base.mm_on if self.mm else default.mm_on,
        )

    @property
    def needs_teacher(self) -> bool:
        return self.nspt or self.kd



METHODS: dict[str, MethodSpec] = {
    "ft": MethodSpec("ft", memory=False, nspt=False, mm=False, kd=False),
    "er": MethodSpec("er", memory=True, nspt=False, mm=False, kd=False),
    "er_kd": MethodSpec("er_kd", memory=True, nspt=False, mm=False, kd=True),
    "coconut": MethodSpec("coconut", memory=True, nspt=True, mm=True, kd=False),
    "coconut_kd": MethodSpec("coconut_kd", memory=True, nspt=True, mm=True, kd=True),
    "joint": MethodSpec("joint", memory=False, nspt=False, mm=False, kd=False, joint=True),
}


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(None, f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def make_batch(
    examples: Sequence[SLUExample],
    tokenizer: SLUTokenizer,
    class_index: Mapping[str, int],
    audio: InputSource,
    memory_ids: frozenset[str] = frozenset(),
    kd_hyps: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Tensor]:
    """A training micro-batch as a dict of tensors (the Trainer moves it to the device).
    ``audio``/``audio_lens`` are the padded encoder inputs of the input source (waveforms or
    packed unit ids and durations, :mod:`speechunits.slu.inputs`).

    ``is_memory`` marks rehearsal rows; ``kd_in``/``kd_out`` are the teacher targets of the
    rehearsal rows in batch order (0 rows when there are none or no hypotheses)."""
    wav, lens = audio.pad(examples)
    tin, tout = decoder_io([tokenizer.encode_target(ex.label, ex.transcript) for ex in examples])
    batch = {
        "audio": wav,
        "audio_lens": lens,
        "tokens_in": tin,
        "tokens_out": tout,
        "labels": torch.tensor([class_index[ex.label] for ex in examples], dtype=torch.long),
        "is_memory": torch.tensor([ex.id in memory_ids for ex in examples], dtype=torch.bool),
    }
    mem_rows = [ex for ex in examples if ex.id in memory_ids]
    if kd_hyps is not None and mem_rows:
        batch["kd_in"], batch["kd_out"] = seq_kd_targets([kd_hyps[ex.id] for ex in mem_rows])
    else:
        batch["kd_in"] = batch["kd_out"] = torch.zeros((0, 1), dtype=torch.long)
    return batch


class SLUTrainTask:
    """One class-incremental task (new-task data + rehearsal memory) for the shared Trainer.

    Args:
        objective: the student (+ teacher after :meth:`CoconutObjective.start_task`).
        examples: this task's training examples followed by the memory examples.
        memory_ids: ids of the rehearsal examples among ``examples``.
        batch_size: global batch size (split across DDP ranks).
        kd_hyps: teacher hypotheses (target ids, no bos/eos) of the memory utterances, for
            seq-KD; ``None`` disables it.
    """

    def __init__(
        self,
        objective: CoconutObjective,
        examples: Sequence[SLUExample],
        memory_ids: frozenset[str] | set[str],
        tokenizer: SLUTokenizer,
        class_index: Mapping[str, int],
        audio: InputSource,
        batch_size: int,
        seed: int = 0,
        kd_hyps: Mapping[str, Sequence[int]] | None = None,
        dist: DistInfo | None = None,
    ) -> None:
        if not examples:
            raise ConfigError(None, "an SLU task needs at least one training example")
        self.dist = dist or DistInfo()
        if batch_size < self.dist.world_size:
            raise ConfigError(None, f"batch_size {batch_size} is smaller than the world size {self.dist.world_size}")
        missing = set(memory_ids) - {ex.id for ex in examples}
        if missing:
            raise ValueError(f"memory ids not among the examples: {sorted(missing)[:5]}")
        if kd_hyps is not None:
            lacking = sorted(set(memory_ids) - set(kd_hyps))
            if lacking:
                raise ValueError(f"no teacher hypothesis for memory utterances {lacking[:5]}")
        self.model = objective
        self.examples = list(examples)
        self.memory_ids = frozenset(memory_ids)
        self.tokenizer = tokenizer
        self.class_index = dict(class_index)
        self.audio = audio
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.kd_hyps = kd_hyps

    def num_batches(self) -> int:
        """Optimizer steps per epoch (the last, smaller batch is kept)."""
        return -(-len(self.examples) // self.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Example indices of each global batch of ``epoch``: a seeded permutation cut into
        pools of ``POOL_BATCHES`` batches, each pool sorted by length (less padding), then
        the batches in a seeded random order. A function of ``(seed, epoch)`` only."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.examples), generator=g).tolist()
        pool = self.batch_size * self.POOL_BATCHES
        out: list[list[int]] = []
        for p in range(0, len(order), pool):
            chunk = sorted(order[p : p + pool], key=lambda i: (self.audio.length(self.examples[i]), i))
            out.extend(chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size))
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    POOL_BATCHES = 16

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        world, rank = self.dist.world_size, self.dist.rank
        for chunk in self.epoch_batches(epoch)[start:]:
            if len(chunk) < world:  # every rank needs a row: repeat rows of the chunk
                chunk = (chunk * world)[:world]
            rows = chunk[rank::world]
            yield make_batch(
                [self.examples[i] for i in rows], self.tokenizer, self.class_index, self.audio, self.memory_ids, self.kd_hyps
            )

    def training_step(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        slu = SLUBatch([], batch["audio"], batch["audio_lens"], batch["tokens_in"], batch["tokens_out"], batch["labels"], [])
        kd = (batch["kd_in"], batch["kd_out"]) if batch["kd_in"].size(0) else None
        loss, parts = self.model(slu, batch["is_memory"], kd)
        parts.pop("loss", None)
        parts["memory_frac"] = float(batch["is_memory"].float().mean())
        return loss, parts

    def num_items(self, batch: dict[str, Tensor]) -> int:
        return int(batch["audio"].size(0))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
