"""HuBERT masked prediction as a :class:`speechunits.train.loop.TrainTask`.

Each step crops utterances (offsets on the encoder's frame grid), masks spans of the
projected frames (:func:`speechunits.hubert.masking.span_mask`), and minimises the cross
entropy of the cosine logits against the frame targets on the masked frames only (the
paper's ``alpha = 1``; ``unmasked_weight`` adds the unmasked frames). Targets are frame unit
sets (:mod:`speechunits.hubert.targets`). Task options live under ``task:`` in the training
config (see ``recipes/conf/hubert_iter1.yaml`` and :data:`DEFAULTS`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.data.jsonl import load_manifests
from speechunits.data.pipeline import AudioBatch, build_audio_pipeline, training_crops
from speechunits.encoders.model import EncoderConfig, SpeechEncoder, conv_output_lengths
from speechunits.errors import ConfigError
from speechunits.hubert.masking import span_mask
from speechunits.hubert.model import HubertPretrainModel
from speechunits.hubert.targets import FrameTargets, crop_targets, load_frame_targets
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.wrap import unwrap_model

IGNORE = -100

DEFAULTS: dict[str, Any] = {
    "data": None,  # Kaldi data dir / JSONL manifest, or a list of them
    "targets": None,  # frame unit set(s) with the k-means id of every frame of every utterance
    "valid_data": None,  # optional held-out data dir(s) and their targets: masked accuracy per validation
    "valid_targets": None,
    "model": "base",  # base | tiny | {preset: base|tiny, <EncoderConfig field>: value}
    "init": None,  # start from this encoder checkpoint instead (e.g. iteration 1 for iteration 2)
    "mask_prob": 0.8,  # span starts per frame x span length (HuBERT: 0.8 with spans of 10 frames)
    "mask_span": 10,
    "min_spans": 2,
    "proj_dim": 256,
    "logit_temperature": 0.1,
    "unmasked_weight": 0.0,  # HuBERT's alpha = 1: the loss is on masked frames only
    "crop_seconds": 5.0,
    "max_batch_seconds": 500.0,  # per rank
    "num_workers": 2,
}


def _opts(config: TrainConfig) -> dict[str, Any]:
    unknown = sorted(set(config.task) - set(DEFAULTS))
    if unknown:
        raise ConfigError(None, f"unknown hubert task options {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **config.task}
    for key in ("data", "targets"):
        if not opts[key]:
            raise ConfigError(None, f"task.{key} is required (training audio and its frame-unit targets)")
    if bool(opts["valid_data"]) != bool(opts["valid_targets"]):
        raise ConfigError(None, "task.valid_data and task.valid_targets go together")
    if not 0.0 <= float(opts["unmasked_weight"]) <= 1.0:
        raise ConfigError(None, f"task.unmasked_weight must be in [0, 1], got {opts['unmasked_weight']}")
    return opts


def build_encoder(opts: dict[str, Any]) -> SpeechEncoder:
    """The encoder to pretrain: loaded from ``init`` or freshly initialised from ``model``."""
    if opts["init"]:
        from speechunits.encoders.checkpoints import load_encoder

        return load_encoder(opts["init"])
    try:
        return SpeechEncoder(EncoderConfig.from_spec(opts["model"]))
    except ValueError as err:
        raise ConfigError(None, f"task.model: {err}") from None


def usable_utterances(utts: list, targets: FrameTargets, conv_layers: list, source: Any) -> list:
    """The utterances to train on: those ``frame-units`` left out as bad are dropped (reported);
    every other one needs targets on the encoder's frame grid (within the format's one frame)."""
    bad = [u.id for u in utts if u.id not in targets.frames and u.id in targets.left_out]
    if bad:
        print(f"train-hubert: leaving out {len(bad)} utterance(s) that frame-units found bad, e.g. "
              f"{bad[0]}: {targets.left_out[bad[0]]}", file=sys.stderr)
    utts = [u for u in utts if u.id not in targets.left_out or u.id in targets.frames]
    missing = [u.id for u in utts if u.id not in targets.frames]
    if missing:
        raise ConfigError(source, f"no targets for {len(missing)} utterance(s), e.g. {missing[:3]}; "
                                  "run speechunits frame-units on this data")
    for u in utts:
        if u.num_samples is None or u.sample_rate != targets.sample_rate:
            continue
        expected = int(conv_output_lengths(torch.tensor(u.num_samples), conv_layers))
        got = len(targets.frames[u.id])
        if abs(got - expected) > 1:
            raise ConfigError(source, f"utterance {u.id!r}: {got} target frames but the encoder gives {expected}; "
                                      "the targets were made on another frame grid")
    return utts


class HubertTask:
    """HuBERT pretraining (see the module docstring)."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.opts = _opts(config)
        self.dist = dist or DistInfo()
        self.seed = int(config.seed)
        encoder = build_encoder(self.opts)
        self.conv_layers = encoder.config.extractor_conv_layer_config
        self.hop = encoder.config.hop_length
        self.targets = load_frame_targets(self.opts["targets"])
        if (self.targets.hop, self.targets.sample_rate) != (self.hop, encoder.config.sample_rate):
            raise ConfigError(self.opts["targets"], f"targets have hop {self.targets.hop} at {self.targets.sample_rate} "
                                                    f"Hz, the encoder {self.hop} at {encoder.config.sample_rate} Hz")
        self.model = HubertPretrainModel(encoder, self.targets.num_classes, proj_dim=int(self.opts["proj_dim"]),
                                         logit_temperature=float(self.opts["logit_temperature"]))
        self.utts = load_manifests(self.opts["data"], require_text=False)
        self.utts = usable_utterances(self.utts, self.targets, self.conv_layers, self.opts["targets"])
        self.valid_utts: list = []
        self.valid_targets: FrameTargets | None = None
        if self.opts["valid_data"]:
            self.valid_utts = load_manifests(self.opts["valid_data"], require_text=False)
            self.valid_targets = load_frame_targets(self.opts["valid_targets"])
            self.valid_utts = usable_utterances(self.valid_utts, self.valid_targets, self.conv_layers,
                                                self.opts["valid_targets"])

    # -- data ---------------------------------------------------------------------------
    def batches(self, epoch: int) -> Iterator[AudioBatch]:
        """This rank's crops of one epoch, in a seeded order."""
        return training_crops(self.utts, epoch=epoch, seed=self.seed,
                              max_batch_seconds=float(self.opts["max_batch_seconds"]),
                              crop_seconds=float(self.opts["crop_seconds"]), crop_align=self.hop,
                              rank=self.dist.rank, world_size=self.dist.world_size,
                              num_workers=int(self.opts["num_workers"]))

    def num_items(self, batch: AudioBatch) -> int:
        return int(batch.lengths.shape[0])

    def batch_ids(self, batch: AudioBatch) -> list[str]:
        return list(batch.ids)

    def _batch_targets(self, batch: AudioBatch, targets: FrameTargets, frame_lengths: Tensor) -> Tensor:
        offsets = batch.offsets if batch.offsets is not None else torch.zeros_like(batch.lengths)
        width = int(frame_lengths.max())
        rows = [crop_targets(targets.frames[utt], int(off) // self.hop, width, IGNORE)
                for utt, off in zip(batch.ids, offsets.tolist())]
        out = torch.from_numpy(np.stack(rows))
        out[torch.arange(width)[None, :] >= frame_lengths.cpu()[:, None]] = IGNORE
        return out

    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1_009 + self.dist.rank)

    def _losses(self, batch: AudioBatch, targets: FrameTargets, generator: torch.Generator,
                model: torch.nn.Module) -> tuple[Tensor, dict[str, float]]:
        frame_lengths = conv_output_lengths(batch.lengths.cpu(), self.conv_layers)
        width = int(frame_lengths.max())
        labels = self._batch_targets(batch, targets, frame_lengths).to(batch.waveforms.device)
        mask = span_mask(frame_lengths, width, mask_prob=float(self.opts["mask_prob"]),
                         span=int(self.opts["mask_span"]), min_spans=int(self.opts["min_spans"]),
                         generator=generator).to(batch.waveforms.device)
        logits, _ = model(batch.waveforms, batch.lengths, mask)
        logits = logits[:, :width]
        known = labels != IGNORE
        masked, unmasked = known & mask, known & ~mask
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.clamp_min(0).reshape(-1),
                                               reduction="none").view_as(labels)
        loss_m = (ce * masked).sum() / masked.sum().clamp_min(1)
        loss_u = (ce * unmasked).sum() / unmasked.sum().clamp_min(1)
        weight = float(self.opts["unmasked_weight"])
        loss = (1.0 - weight) * loss_m + weight * loss_u if weight > 0 else loss_m
        hits = logits.argmax(dim=-1) == labels
        metrics = {
            "loss_masked": float(loss_m.detach()), "loss_unmasked": float(loss_u.detach()),
            "acc_masked": float((hits & masked).sum()) / max(1, int(masked.sum())),
            "acc_unmasked": float((hits & unmasked).sum()) / max(1, int(unmasked.sum())),
            "mask_fraction": float(mask.sum()) / max(1, int(frame_lengths.sum())),
        }
        return loss, metrics

    # -- step ---------------------------------------------------------------------------
    def training_step(self, batch: AudioBatch, step: int) -> tuple[Tensor, dict[str, float]]:
        return self._losses(batch, self.targets, self._generator(step), self.model)

    def validate(self, step: int) -> dict[str, float]:
        """Masked and unmasked accuracy on the held-out data (a fixed mask per run)."""
        if self.valid_targets is None:
            return {}
        device = next(self.model.parameters()).device
        pipe = build_audio_pipeline(self.valid_utts, max_batch_seconds=float(self.opts["max_batch_seconds"]),
                                    rank=self.dist.rank, world_size=self.dist.world_size, shuffle=False,
                                    num_parallel_calls=int(self.opts["num_workers"]))
        generator = torch.Generator().manual_seed(self.seed + 12345)
        totals: dict[str, float] = {}
        count = 0
        try:
            for batch in pipe:
                batch = AudioBatch(batch.ids, batch.waveforms.to(device), batch.lengths.to(device), batch.offsets)
                _, metrics = self._losses(batch, self.valid_targets, generator, self.model)
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        finally:
            pipe.close()
        return {k: v / max(count, 1) for k, v in totals.items()}

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def export(self, path: str | Path, step: int | None = None) -> None:
        """Save the encoder alone, loadable by :func:`speechunits.encoders.checkpoints.load_encoder`."""
        from speechunits.encoders.checkpoints import save_encoder

        save_encoder(path, unwrap_model(self.model).encoder)
