"""The judge's training task for the shared Trainer (``speechunits train-judge``).

Task options (``task.`` keys, :data:`DEFAULTS`):

- ``train``, ``valid``: data dirs (``manifest.jsonl`` with id/audio/text) or manifests.
- ``fbank``: :class:`~speechunits.asr.fbank.FbankConfig` keys; ``model``:
  :class:`~speechunits.asr.model.JudgeModelConfig` keys (``vocab_size`` comes from the data).
- ``max_frames``: padded input frames (100 per second) of one global batch;
  ``max_utts``: rows of one global batch; ``pool_batches``: batches per length-sorting pool.
- ``specaug``: ``freq_masks``, ``freq_width``, ``time_masks``, ``time_width``, ``time_ratio``
  (training only).
- ``valid_beam`` (1: greedy), ``valid_max_utts`` (0: all): validation decoding.

Batches of an epoch: a permutation drawn from a generator seeded by ``(data_seed, epoch)``,
cut into pools of about ``pool_batches`` batches, each pool sorted by length and packed
under the frame budget, then the batches shuffled by the same generator. Each global batch
is split across DDP ranks (rows ``rank::world``); so the batches are a function of
``(epoch, rank)`` alone and a resumed run sees the same data. All features are computed once
at start-up and kept in memory (about 32 KB per second of audio).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from speechunits.data.batching import pack_by_frames
from speechunits.asr.data import read_transcribed
from speechunits.data.waves import load_waves, report_bad
from speechunits.asr.decode import ctc_decode
from speechunits.asr.fbank import FbankConfig, log_fbank, pad_features
from speechunits.asr.judge import save_judge
from speechunits.asr.model import CTCJudgeModel, JudgeModelConfig, ctc_loss, spec_augment
from speechunits.asr.vocab import CharVocab, normalize_text
from speechunits.errors import ConfigError
from speechunits.eval.error_rates import error_rates
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.wrap import unwrap_model

SPECAUG_DEFAULTS: dict[str, Any] = {"freq_masks": 2, "freq_width": 15, "time_masks": 2, "time_width": 40, "time_ratio": 0.1}
DEFAULTS: dict[str, Any] = {
    "train": None,
    "valid": None,
    "fbank": {},
    "model": {},
    "max_frames": 20000,
    "max_utts": 64,
    "pool_batches": 20,
    "data_seed": 0,
    "specaug": {},
    "valid_beam": 1,
    "valid_max_utts": 0,
}


def task_options(task: Mapping[str, Any]) -> dict[str, Any]:
    """``task`` over :data:`DEFAULTS`; ConfigError on unknown keys or a missing train set."""
    unknown = set(task) - set(DEFAULTS)
    if unknown:
        raise ConfigError(None, f"unknown train-judge task options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **task}
    if not opts["train"]:
        raise ConfigError(None, "train-judge needs task.train=DATA_DIR (a data dir with manifest.jsonl)")
    bad = set(opts["specaug"] or {}) - set(SPECAUG_DEFAULTS)
    if bad:
        raise ConfigError(None, f"unknown task.specaug options {sorted(bad)}; known: {sorted(SPECAUG_DEFAULTS)}")
    opts["specaug"] = {**SPECAUG_DEFAULTS, **(opts["specaug"] or {})}
    if int(opts["max_frames"]) < 1 or int(opts["max_utts"]) < 1:
        raise ConfigError(None, "task.max_frames and task.max_utts must be >= 1")
    return opts


class _Corpus:
    """Ids, features, label ids and normalised transcripts of the readable utterances."""

    def __init__(self, data: str, fbank: FbankConfig, what: str, progress: bool) -> None:
        utts = read_transcribed(data)
        waves, bad = load_waves(utts, fbank.sample_rate, desc=f"load {what}", progress=progress)
        report_bad(bad, f"train-judge ({what} {data})")
        kept = [u for u in utts if u.id in waves]
        if not kept:
            raise ConfigError(Path(data), f"no readable {what} utterance")
        self.ids = [u.id for u in kept]
        self.texts = [normalize_text(u.text or "") for u in kept]
        self.feats: list[Tensor] = [
            log_fbank(waves.pop(u.id), fbank.sample_rate, fbank)
            for u in tqdm(kept, desc=f"fbank {what}", unit="utt", file=sys.stderr, disable=not progress or None, leave=False)
        ]
        self.lengths = [int(f.size(0)) for f in self.feats]
        self.num_bad = len(bad)


class JudgeTask:
    """CTC training of the judge on ``task.train``, CER/WER on ``task.valid``."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.dist = dist or DistInfo()
        self.opts = o = task_options(config.task)
        self.fbank = FbankConfig.from_dict(o["fbank"] or {})
        progress = bool(config.progress) and self.dist.is_main
        self.train = _Corpus(str(o["train"]), self.fbank, "train", progress)
        self.vocab = CharVocab.from_texts(self.train.texts)
        self.targets = [self.vocab.encode(t) for t in self.train.texts]
        self.valid = _Corpus(str(o["valid"]), self.fbank, "valid", progress) if o["valid"] else None
        model_opts = {**(o["model"] or {}), "num_mel_bins": self.fbank.num_mel_bins, "vocab_size": len(self.vocab)}
        self.model_cfg = JudgeModelConfig.from_dict(model_opts)
        self.model = CTCJudgeModel(self.model_cfg)
        self.last_valid: dict[str, float] = {}

    # ------------------------------------------------------------------ data
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Training indices of each global batch of ``epoch`` (a function of the epoch only)."""
        o = self.opts
        g = torch.Generator().manual_seed(int(o["data_seed"]) * 1_000_003 + epoch)
        order = torch.randperm(len(self.train.ids), generator=g).tolist()
        lengths = self.train.lengths
        mean_len = max(1, sum(lengths) // len(lengths))
        per_batch = max(1, min(int(o["max_utts"]), int(o["max_frames"]) // mean_len))
        pool = per_batch * int(o["pool_batches"])
        out: list[list[int]] = []
        for p in range(0, len(order), pool):
            chunk = sorted(order[p : p + pool], key=lambda i: (lengths[i], i))
            out.extend(pack_by_frames(chunk, lengths, int(o["max_frames"]), int(o["max_utts"])))
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        world, rank = self.dist.world_size, self.dist.rank
        for chunk in self.epoch_batches(epoch)[start:]:
            if len(chunk) < world:  # every rank needs a row
                chunk = (chunk * world)[:world]
            yield self._make_batch(chunk[rank::world])

    def _make_batch(self, rows: list[int]) -> dict[str, Tensor]:
        feats, lengths = pad_features([self.train.feats[i] for i in rows])
        labels = [self.targets[i] for i in rows]
        return {
            "feats": feats,
            "lengths": lengths,
            "targets": torch.tensor([k for seq in labels for k in seq], dtype=torch.long),
            "target_lengths": torch.tensor([len(seq) for seq in labels], dtype=torch.long),
        }

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        feats = spec_augment(batch["feats"], batch["lengths"], **self.opts["specaug"])
        log_probs, out_lengths = self.model(feats, batch["lengths"])
        loss = ctc_loss(log_probs, out_lengths, batch["targets"], batch["target_lengths"])
        chars = float(batch["target_lengths"].sum().clamp(min=1))
        return loss, {"frames": float(batch["lengths"].sum()), "loss_per_char": float(loss.detach()) * len(batch["lengths"]) / chars}

    def num_items(self, batch: dict[str, Tensor]) -> int:
        return int(batch["feats"].size(0))

    @torch.no_grad()
    def decode_valid(self, beam: int = 1) -> tuple[list[str], list[str]]:
        """(references, hypotheses) of the validation set (or its first ``valid_max_utts``)."""
        assert self.valid is not None
        model = unwrap_model(self.model)
        device = next(model.parameters()).device
        n = int(self.opts["valid_max_utts"]) or len(self.valid.ids)
        feats, refs = self.valid.feats[:n], self.valid.texts[:n]
        order = sorted(range(len(feats)), key=lambda i: feats[i].size(0))
        hyps = [""] * len(feats)
        for rows in pack_by_frames(order, [f.size(0) for f in feats], int(self.opts["max_frames"])):
            x, lens = pad_features([feats[i] for i in rows])
            log_probs, out_lens = model(x.to(device), lens.to(device))
            log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
            for r, i in enumerate(rows):
                hyps[i] = self.vocab.decode(ctc_decode(log_probs[r, : int(out_lens[r])], beam))
        return refs, hyps

    def validate(self, step: int) -> dict[str, float]:
        """CER/WER (percent) of the validation set; every rank decodes all of it."""
        if self.valid is None:
            return {}
        refs, hyps = self.decode_valid(int(self.opts["valid_beam"]))
        self.last_valid = error_rates(refs, hyps)
        return dict(self.last_valid)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_list()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = list(state.get("vocab") or [])
        if saved != self.vocab.to_list():
            # ValueError: the Trainer reports it as a CheckpointError naming the file
            raise ValueError(f"the checkpoint's vocabulary {''.join(saved)!r} differs from task.train's "
                             f"{''.join(self.vocab.to_list())!r}: the training data changed")

    def export(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the inference checkpoint ``judge.pt``."""
        info = {"train": str(self.opts["train"]), "valid": str(self.opts["valid"] or ""),
                **{f"valid_{k}": v for k, v in self.last_valid.items()}, **(extra or {})}
        return save_judge(path, unwrap_model(self.model), self.vocab, self.fbank, info)
