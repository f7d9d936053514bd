"""The Capacitron training task for the shared Trainer (``speechunits train-tts``).

Optimizers, in step order:

* ``main``: AdamW (the config's lr, schedule, clipping) over the whole model, on
  ``(NLL + lambda_before * L1_before + sum_levels beta * (KL - C)) / V
  + lambda_stop * stop BCE + lambda_ga * guided attention``, with ``beta`` held fixed and
  ``V`` the mean number of mel values per utterance (:mod:`speechunits.tts.losses` says why
  the division leaves the capacity in nats);
* ``beta`` (variational models only): plain SGD at ``task.beta_lr`` on the Lagrange
  multipliers, minimising ``-beta * (KL - C)`` with the KL of the same batch held fixed
  (gradient ascent on the Lagrangian). It has no clipping and no schedule: a clipped or
  decayed multiplier could not hold the constraint.

The ``main`` step caches each micro-batch's mean KL for the ``beta`` step (the Trainer runs
all of ``main``'s micro-batches, then all of ``beta``'s, on the same data), so the
multiplier sees exactly the KL the model was trained on, without a second forward pass.

Stability: the guided-attention loss, length-bucketed shuffled batches
(:class:`~speechunits.tts.data.BucketBatches`), ``nonfinite: skip`` in the shipped configs
(the Trainer skips a step with a non-finite loss or gradient and logs the utterance ids from
:meth:`TTSTask.batch_ids`), and an alignment-health check in :meth:`TTSTask.validate`: on a
fixed dev subset, teacher-forced attention diagonality and KL, and free-running decoding's
stop-token and attention failure rates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.errors import ConfigError
from speechunits.eval.attention_metrics import attention_failure, diagonality
from speechunits.features.griffin_lim import griffin_lim
from speechunits.features.mel import MelConfig
from speechunits.text import TextFrontend
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.logger import panels_image
from speechunits.train.optim import OptimizerSpec, default_optimizer
from speechunits.train.wrap import unwrap_model
from speechunits.tts.config import TTSConfig
from speechunits.tts.data import BucketBatches, TTSCorpus, collate
from speechunits.tts.losses import decoder_steps, guided_attention_loss, laplace_nll, stop_loss
from speechunits.tts.model_io import save_tts
from speechunits.tts.tacotron import Capacitron, build_multipliers

DEFAULTS: dict[str, Any] = {
    "train": None,  # data dir (speechunits prepare-data)
    "valid": None,
    "train_symbols": None,  # speechunits phonemize output of task.train (default: run the front end here)
    "valid_symbols": None,
    "frontend": {"kind": "phonemes", "language": "en-us"},
    "mel": {},  # MelConfig keys (default: 22.05 kHz, hop 256, 80 bins to 8 kHz)
    "model": {},  # TacotronConfig keys
    "prosody": {},  # ProsodyConfig keys (kind: none | V | VT | VTS | hierarchical)
    "use_speakers": False,
    "batch_size": 32,  # utterances per batch and rank
    "max_frames": None,  # cap on padded frames per batch (long utterances -> smaller batches)
    "max_seconds": None,  # skip longer training utterances
    "max_utts": None,
    "nll_scale": 1.0,  # Laplace scale b of the reconstruction likelihood (normalised mel units)
    "lambda_before": 1.0,  # auxiliary L1 of the pre-post-net mel (same scale as the NLL)
    "lambda_stop": 1.0,
    "stop_pos_weight": 5.0,
    "lambda_ga": 1.0,
    "ga_width": 0.2,
    "ga_until": None,  # step after which the guided-attention loss is off (None: always on)
    "beta_lr": 1e-3,
    "beta_init": 1.0,
    "valid_utts": 16,
    "max_frames_per_symbol": 15.0,
    "media_utts": 1,
    "griffin_lim_iters": 16,
    "data_seed": 1234,
}


def task_options(config: TrainConfig) -> dict[str, Any]:
    unknown = set(config.task) - set(DEFAULTS)
    if unknown:
        raise ConfigError(None, f"unknown tts task options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **config.task}
    if not opts["train"]:
        raise ConfigError(None, "train-tts needs task.train=DATA_DIR")
    return opts


class TTSTask:
    """Capacitron (or plain Tacotron2) training; see the module docstring."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.dist = dist or DistInfo()
        self.opts = o = task_options(config)
        quiet = not self.dist.is_main
        mel = MelConfig.from_dict({**TTSConfig().mel.to_dict(), **dict(o["mel"] or {})})
        self.frontend = TextFrontend.from_dict(dict(o["frontend"]))
        self.train_data = TTSCorpus(o["train"], mel, self.frontend, symbols_file=o["train_symbols"],
                                    max_utts=o["max_utts"], max_seconds=o["max_seconds"], quiet=quiet)
        self.table = self.train_data.table
        self.speakers = {s: i for i, s in enumerate(self.train_data.speakers())} if o["use_speakers"] else {}
        if o["use_speakers"] and not self.speakers:
            raise ConfigError(o["train"], "task.use_speakers: the training set has no speaker labels")
        model_cfg = {**dict(o["model"] or {}), "num_symbols": len(self.table), "num_speakers": len(self.speakers)}
        self.cfg = TTSConfig(mel=mel, frontend=self.frontend.to_dict(), tacotron=model_cfg, prosody=dict(o["prosody"] or {}))
        self.model = Capacitron(self.cfg)
        mean, std = self.train_data.mel_statistics()
        self.model.mel_mean.copy_(mean)
        self.model.mel_std.copy_(std)
        self._norm = (mean, std, self.model.silence.detach().clone())
        multipliers = build_multipliers(self.cfg, float(o["beta_init"]))
        if multipliers is not None:
            self.lagrange = multipliers
        self.capacities = torch.tensor(self.cfg.prosody.capacities, dtype=torch.float32)
        self.valid_data = None
        if o["valid"]:
            self.valid_data = TTSCorpus(o["valid"], mel, self.frontend, symbols_file=o["valid_symbols"], table=self.table,
                                        max_utts=int(o["valid_utts"]), quiet=quiet)
        self.buckets = BucketBatches([i.frames for i in self.train_data.items], int(o["batch_size"]),
                                     o["max_frames"], self.dist, int(o["data_seed"]))
        self._kl_cache: list[Tensor] = []

    @property
    def variational(self) -> bool:
        return self.cfg.prosody.variational

    # ------------------------------------------------------------------ Trainer hooks
    def optimizers(self, config: TrainConfig) -> list[OptimizerSpec]:
        specs = [default_optimizer(config, self.model)]
        if self.variational:
            sgd = torch.optim.SGD(self.lagrange.parameters(), lr=float(self.opts["beta_lr"]))
            specs.append(OptimizerSpec("beta", sgd, None, None, modules=("lagrange",)))
        return specs

    def batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        mean, std, silence = self._norm
        r = self.cfg.tacotron.reduction
        for indices in self.buckets(epoch):
            yield collate([self.train_data.items[i] for i in indices], r, mean, std, silence, self.speakers)

    def num_items(self, batch: dict[str, Any]) -> int:
        return len(batch["ids"])

    def batch_ids(self, batch: dict[str, Any]) -> list[str]:
        return list(batch["ids"])

    def beta(self) -> Tensor | None:
        return unwrap_model(self.lagrange).beta().detach() if self.variational else None

    def training_step(self, batch: dict[str, Any], step: int, optimizer: str = "main") -> tuple[Tensor, dict[str, float]]:
        if optimizer == "beta":
            mean_kl = self._kl_cache.pop(0)
            return self.lagrange(mean_kl, self.capacities.to(mean_kl.device)), {}
        o = self.opts
        out = self.model(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"], batch.get("speaker"))
        mel, lengths = batch["mel"], batch["mel_lengths"]
        nll = laplace_nll(out.mel_after, mel, lengths, float(o["nll_scale"])).mean()
        aux = laplace_nll(out.mel_before, mel, lengths, float(o["nll_scale"])).mean()
        values = lengths.float().mean() * self.cfg.mel.n_mels
        objective = nll + float(o["lambda_before"]) * aux
        metrics: dict[str, float] = {"nll": float(nll.detach()), "nll_per_value": float(nll.detach() / values)}
        if out.kl is not None:
            mean_kl = out.kl.float().mean(0)  # [levels]
            self._kl_cache.append(mean_kl.detach())
            beta = self.beta()
            objective = objective + (beta * (mean_kl - self.capacities.to(mean_kl.device))).sum()
            names = ["kl"] if mean_kl.numel() == 1 else ["kl_s", "kl_p"]
            for i, name in enumerate(names):
                metrics[name] = float(mean_kl[i].detach())
                metrics[name.replace("kl", "beta")] = float(beta[i])
        steps = decoder_steps(lengths, self.cfg.tacotron.reduction)
        stop = stop_loss(out.stop_logits, lengths, self.cfg.tacotron.reduction, float(o["stop_pos_weight"]))
        loss = objective / values + float(o["lambda_stop"]) * stop
        metrics["stop"] = float(stop.detach())
        if float(o["lambda_ga"]) and (o["ga_until"] is None or step < int(o["ga_until"])):
            ga = guided_attention_loss(out.attention, batch["text_lengths"], steps, float(o["ga_width"]))
            loss = loss + float(o["lambda_ga"]) * ga
            metrics["guided_attention"] = float(ga.detach())
        return loss, metrics

    # ------------------------------------------------------------------ validation
    def _valid_batches(self, size: int = 8) -> Iterator[dict[str, Any]]:
        if self.valid_data is None:
            return
        mean, std, silence = self._norm
        items = self.valid_data.items
        device = next(unwrap_model(self.model).parameters()).device
        for k in range(0, len(items), size):
            batch = collate(items[k:k + size], self.cfg.tacotron.reduction, mean, std, silence, self.speakers)
            yield {key: (v.to(device) if isinstance(v, Tensor) else v) for key, v in batch.items()}

    def reference_prosody(self, model: Capacitron, batch: dict[str, Any]) -> Tensor | None:
        """The posterior mean of each utterance's own audio (what transfer uses), or None."""
        if model.prosody is None:
            return None
        encoded = model.encoder(batch["text"], batch["text_lengths"])
        spk = model.speaker_vector(batch.get("speaker"), batch["text"].shape[0], batch["text"].device)
        return model.posterior(encoded, batch["text_lengths"], batch["mel"], batch["mel_lengths"], spk,
                               sample=False).embedding

    def validate(self, step: int) -> dict[str, float]:
        """Alignment health and KL on the fixed dev subset (rank 0; others return nothing)."""
        if not self.dist.is_main or self.valid_data is None:
            return {}
        model: Capacitron = unwrap_model(self.model)  # type: ignore[assignment]
        r = self.cfg.tacotron.reduction
        diag, kls, nlls, fails, stops = [], [], [], [], []
        for batch in self._valid_batches():
            out = model(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"], batch.get("speaker"))
            nlls += laplace_nll(out.mel_after, batch["mel"], batch["mel_lengths"], float(self.opts["nll_scale"])).tolist()
            if out.kl is not None:
                kls += out.kl.float().sum(-1).tolist()
            steps = decoder_steps(batch["mel_lengths"], r)
            for k in range(out.attention.shape[0]):
                att = out.attention[k, : int(steps[k]), : int(batch["text_lengths"][k])].float().cpu().numpy()
                diag.append(diagonality(att, int(batch["text_lengths"][k])))
            free = model.infer(batch["text"], batch["text_lengths"], self.reference_prosody(model, batch),
                               batch.get("speaker"), float(self.opts["max_frames_per_symbol"]))
            for k in range(free.attention.shape[0]):
                n = int(batch["text_lengths"][k])
                att = free.attention[k, : int(free.steps[k]), :n].float().cpu().numpy()
                failed, _ = attention_failure(att, n, bool(free.stop_fired[k]))
                fails.append(failed)
                stops.append(not bool(free.stop_fired[k]))
        out_metrics = {"nll": float(np.mean(nlls)), "diagonality": float(np.mean(diag)),
                       "attention_failure_rate": float(np.mean(fails)), "stop_failure_rate": float(np.mean(stops))}
        if kls:
            out_metrics["kl"] = float(np.mean(kls))
        return out_metrics

    def media(self, step: int) -> dict[str, dict[str, Any]]:
        """One dev utterance: free-running attention, real vs generated mel, Griffin-Lim audio."""
        model: Capacitron = unwrap_model(self.model)  # type: ignore[assignment]
        audio: dict[str, Any] = {}
        images: dict[str, Any] = {}
        for batch in self._valid_batches(int(self.opts["media_utts"])):
            free = model.infer(batch["text"], batch["text_lengths"], self.reference_prosody(model, batch),
                               batch.get("speaker"), float(self.opts["max_frames_per_symbol"]))
            uid, n = batch["ids"][0], int(batch["text_lengths"][0])
            steps = int(free.steps[0])
            att = free.attention[0, :steps, :n].float().cpu().numpy().T
            gen = model.denormalize(free.mel_after[0, : steps * self.cfg.tacotron.reduction]).float()
            real = model.denormalize(batch["mel"][0, : int(batch["mel_lengths"][0])]).float()
            images[f"alignment/{uid}"] = panels_image([("attention (free running)", att),
                                                       ("real mel", real.cpu().numpy().T),
                                                       ("generated mel", gen.cpu().numpy().T)])
            wave = griffin_lim(gen.T.cpu(), self.cfg.mel, n_iter=int(self.opts["griffin_lim_iters"]))
            audio[f"griffin_lim/{uid}"] = (wave.numpy(), self.cfg.mel.sample_rate)
            break
        return {"audio": audio, "images": images}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def export(self, path: str | Path, step: int | None = None) -> None:
        extra: dict[str, Any] = {"speakers": self.speakers, "step": step}
        if self.variational:
            extra["beta"] = self.beta().cpu().tolist()  # type: ignore[union-attr]
        save_tts(path, unwrap_model(self.model), self.table, extra=extra)  # type: ignore[arg-type]


__all__ = ["DEFAULTS", "TTSTask", "task_options"]
