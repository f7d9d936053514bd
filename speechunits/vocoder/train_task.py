"""The vocoder GAN task for the shared Trainer (``speechunits train-vocoder``).

``task.model`` is the :class:`~speechunits.vocoder.model.Vocoder` (front end + generator +
optional duration predictor), ``task.disc`` the discriminators. Every optimizer step is a
discriminator step, then a generator step (optimizers ``disc`` then ``gen``):

* ``disc``: AdamW at ``task.d_lr`` (2e-4), betas ``task.d_betas`` (0.8, 0.99), on the LSGAN
  loss of real crops against the generator's detached output;
* ``gen``: AdamW at the config's ``lr``/``betas``/``weight_decay`` on
  ``lsgan + lambda_fm * feature matching + lambda_mel * mel L1`` (2 and 45, HiFi-GAN's
  weights) ``+ lambda_dur * duration MSE`` (1, when the model has a duration predictor)
  ``+ lambda_stft * multi-resolution STFT loss`` (0 by default; Parallel WaveGAN's spectral
  convergence + log magnitude at ``task.stft_resolutions``: it also constrains the phase
  through the other resolutions, which makes short CPU runs converge much faster).

``task.schedule: exponential`` (default) decays both learning rates by ``lr_decay`` (0.999)
every ``lr_decay_steps`` steps, smoothly (HiFi-GAN's per-epoch decay, as a per-step factor);
``task.schedule: config`` uses the config's warmup/cosine/linear schedule for both.

``task.adversarial_start`` (steps, default 0) trains the generator on the mel L1 alone
before it (the discriminator then only sees a token slice, with zero loss): a short mel
warm-up speeds up GAN vocoders (Vocos, HiFi-GAN fine-tuning practice) and makes tiny CPU
runs produce usable audio. Options are in :data:`DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from speechunits.errors import ConfigError
from speechunits.features.mel import LogMel
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.logger import panels_image
from speechunits.train.optim import OptimizerSpec
from speechunits.train.schedule import LRFactor
from speechunits.train.wrap import unwrap_model
from speechunits.vocoder import losses
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.data import CropBatches, VocoderCorpus, pad_runs, unit_config_fields
from speechunits.vocoder.discriminators import build_discriminators
from speechunits.vocoder.inputs import VocoderInputs
from speechunits.vocoder.model import Vocoder, save_vocoder

DEFAULTS: dict[str, Any] = {
    "train": None,  # unit set (frame_units / syllables) or data dir (mel)
    "valid": None,
    "f0": None,  # F0 dir (speechunits extract-f0) of the training corpus; needs model.use_f0
    "valid_f0": None,  # F0 dir of the validation corpus (default: task.f0)
    "model": {},  # VocoderConfig keys; unit_hop/vocab_size/silence_id/embedding_dim come from task.train
    "use_speakers": False,  # speaker embedding over the training set's speakers
    "segment_samples": 8192,
    "segment_seconds": None,  # overrides segment_samples (rounded down to whole unit frames)
    "batch_size": 16,  # global batch (split across DDP ranks)
    "discriminators": ["mpd", "msd"],
    "disc_overrides": {},
    "d_lr": 2e-4,
    "d_betas": [0.8, 0.99],
    "schedule": "exponential",  # exponential | config
    "lr_decay": 0.999,
    "lr_decay_steps": 1000,
    "d_clip": None,
    "g_clip": None,
    "lambda_mel": 45.0,
    "lambda_fm": 2.0,
    "lambda_dur": 1.0,
    "lambda_stft": 0.0,  # Parallel WaveGAN's multi-resolution STFT loss (spectral convergence + log magnitude)
    "stft_resolutions": None,  # [[n_fft, hop, win], ...]; default losses.STFT_LOSS_RESOLUTIONS
    "adversarial_start": 0,
    "valid_utts": 4,
    "valid_max_seconds": 10.0,
    "media_utts": 2,
    "cache_audio": True,
    "max_utts": None,  # use only the first N training utterances (tests, smoke runs)
    "data_seed": 1234,
}
OPTIMIZERS = ("disc", "gen")
WARMUP_DISC_SAMPLES = 4096


class ExponentialFactor:
    """``decay ** (step / every)``: a smooth per-step form of a per-epoch exponential decay (picklable)."""

    def __init__(self, decay: float, every: int) -> None:
        self.decay, self.every = float(decay), max(1, int(every))

    def __call__(self, step: int) -> float:
        return self.decay ** (step / self.every)


class DiscriminatorSet(nn.Module):
    """Several discriminators as one module: scores and feature maps of all, concatenated."""

    def __init__(self, names: list[str], overrides: dict[str, Any]) -> None:
        super().__init__()
        built = build_discriminators(list(names), dict(overrides))
        if isinstance(built, nn.ModuleDict):
            self.discs = nn.ModuleList(built.values())
        elif isinstance(built, (nn.ModuleList, list, tuple)):
            self.discs = nn.ModuleList(built)
        else:
            self.discs = nn.ModuleList([built])

    def forward(self, wave: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores: list[Tensor] = []
        feats: list[list[Tensor]] = []
        for d in self.discs:
            s, f = d(wave)
            scores.extend(s)
            feats.extend(f)
        return scores, feats


def _scalar(value: Any) -> Tensor:
    """Loss functions may return (loss, details); keep the loss."""
    return value[0] if isinstance(value, (tuple, list)) else value


def task_options(config: TrainConfig) -> dict[str, Any]:
    unknown = set(config.task) - set(DEFAULTS)
    if unknown:
        raise ConfigError(None, f"unknown vocoder task options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **config.task}
    if not opts["train"]:
        raise ConfigError(None, "train-vocoder needs task.train=UNIT_SET (or DATA_DIR for a mel vocoder)")
    if opts["schedule"] not in ("exponential", "config"):
        raise ConfigError(None, f"task.schedule={opts['schedule']!r}: expected exponential or config")
    return opts


class VocoderTask:
    """HiFi-GAN-style training of a :class:`Vocoder` (see the module docstring)."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.dist = dist or DistInfo()
        self.opts = o = task_options(config)
        model_dict = dict(o["model"] or {})
        model_dict.setdefault("input", "mel")
        if model_dict["input"] != "mel":
            model_dict = unit_config_fields(o["train"], model_dict)
        probe = VocoderConfig.from_dict({k: v for k, v in model_dict.items() if k != "num_speakers"})
        if (o["f0"] or o["valid_f0"]) and not probe.use_f0:
            raise ConfigError(None, "task.f0 is given but model.use_f0 is false: the F0 track would be ignored "
                                    "(set task.model.use_f0=true, or drop task.f0)")
        quiet = not self.dist.is_main
        self.train_data = VocoderCorpus(o["train"], probe, f0=o["f0"] if probe.use_f0 else None,
                                        cache_audio=bool(o["cache_audio"]), max_utts=o["max_utts"], quiet=quiet)
        if probe.use_f0 and not o["f0"]:
            raise ConfigError(None, "model.use_f0 needs task.f0=F0_DIR (speechunits extract-f0)")
        self.speakers = dict(self.train_data.speakers)
        if o["use_speakers"]:
            if not self.speakers:
                raise ConfigError(o["train"], "task.use_speakers: the training set has no speaker labels")
            model_dict["num_speakers"] = len(self.speakers)
        self.cfg = VocoderConfig.from_dict(model_dict)
        self.train_data.cfg = self.cfg
        self.valid_data = None
        if o["valid"]:
            valid_f0 = (o["valid_f0"] or o["f0"]) if self.cfg.use_f0 else None
            self.valid_data = VocoderCorpus(o["valid"], self.cfg, f0=valid_f0, speakers=self.speakers,
                                            cache_audio=True, max_utts=int(o["valid_utts"]), quiet=quiet)
        step = self.cfg.hop_length if self.cfg.input == "mel" else self.cfg.unit_hop
        segment = int(o["segment_samples"]) if o["segment_seconds"] is None else \
            int(float(o["segment_seconds"]) * self.cfg.sample_rate)
        self.segment_samples = segment // step * step
        self.crops = CropBatches(self.train_data, self.segment_samples, int(o["batch_size"]), self.dist,
                                 int(o["data_seed"]))
        self.model = Vocoder(self.cfg)
        self.model.extra = self.model_extra()
        self.disc = DiscriminatorSet(list(o["discriminators"]), dict(o["disc_overrides"] or {}))
        self.log_mel = LogMel(self.cfg.mel)

    # ------------------------------------------------------------------ Trainer hooks
    def model_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"speakers": self.speakers}
        if self.train_data.f0 is not None:
            extra["log_f0_mean"] = float(self.train_data.f0.log_f0_mean)
            extra["log_f0_std"] = float(self.train_data.f0.log_f0_std)
        return extra

    def optimizers(self, config: TrainConfig) -> list[OptimizerSpec]:
        o = self.opts
        disc = torch.optim.AdamW(self.disc.parameters(), lr=float(o["d_lr"]), betas=tuple(o["d_betas"]),
                                 weight_decay=config.weight_decay)
        gen = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                                weight_decay=config.weight_decay)
        if o["schedule"] == "exponential":
            factor: Any = ExponentialFactor(o["lr_decay"], o["lr_decay_steps"])
            d_factor: Any = ExponentialFactor(o["lr_decay"], o["lr_decay_steps"])
        else:
            factor = LRFactor(config.schedule, config.warmup_steps, config.max_steps, config.min_lr_ratio)
            d_factor = LRFactor(config.schedule, config.warmup_steps, config.max_steps, config.min_lr_ratio)
        return [OptimizerSpec("disc", disc, LambdaLR(disc, d_factor), o["d_clip"], modules=("disc",)),
                OptimizerSpec("gen", gen, LambdaLR(gen, factor), o["g_clip"] if o["g_clip"] is not None
                              else config.clip_norm, modules=("model",))]

    def batches(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        return self.crops(epoch)

    def num_items(self, batch: dict[str, Tensor]) -> int:
        return int(batch["wave"].shape[0])

    @staticmethod
    def inputs_of(batch: dict[str, Tensor]) -> VocoderInputs:
        return VocoderInputs(**{f.name: batch[f.name] for f in fields(VocoderInputs) if f.name in batch})

    def mel_of(self, wave: Tensor) -> Tensor:
        return self.log_mel(wave.reshape(wave.shape[0], -1).float())

    def conditioning(self, batch: dict[str, Tensor], real_mel: Tensor) -> VocoderInputs:
        x = self.inputs_of(batch)
        if self.cfg.input == "mel":
            x.mel = real_mel
        return x

    def generate(self, batch: dict[str, Tensor], real_mel: Tensor) -> tuple[Tensor, Tensor | None]:
        x = self.conditioning(batch, real_mel)
        if self.cfg.duration_predictor:
            return self.model(x, durations=(batch["dp_ids"], batch["dp_durations"], batch["dp_mask"]))
        return self.model(x), None

    def adversarial(self, step: int) -> bool:
        return step >= int(self.opts["adversarial_start"])

    def training_step(self, batch: dict[str, Tensor], step: int, optimizer: str) -> tuple[Tensor, dict[str, float]]:
        o = self.opts
        real = batch["wave"].unsqueeze(1)  # [B, 1, T]
        with torch.no_grad():
            real_mel = self.mel_of(real)
        if optimizer == "disc":
            if not self.adversarial(step):
                # mel-only warm-up: the discriminator sees a short slice with zero weight (every parameter
                # takes part, as DDP requires, at a fraction of the cost)
                scores, _ = self.disc(real[..., :WARMUP_DISC_SAMPLES])
                return sum(s.sum() for s in scores) * 0.0, {}
            with torch.no_grad():
                fake, _ = self.generate(batch, real_mel)
            scores, _ = self.disc(torch.cat([real, fake[..., : real.shape[-1]].detach()]))
            n = real.shape[0]
            loss = _scalar(losses.lsgan_discriminator_loss([s[:n] for s in scores], [s[n:] for s in scores]))
            return loss, {"d_real": float(sum(s[:n].detach().mean() for s in scores) / len(scores)),
                          "d_fake": float(sum(s[n:].detach().mean() for s in scores) / len(scores))}
        if optimizer != "gen":
            raise ConfigError(None, f"vocoder task: optimizer {optimizer!r}; expected one of {list(OPTIMIZERS)}")
        fake, dur_loss = self.generate(batch, real_mel)
        fake = fake[..., : real.shape[-1]]
        mel_l1 = nn.functional.l1_loss(self.mel_of(fake), real_mel)
        loss = float(o["lambda_mel"]) * mel_l1
        metrics = {"mel_l1": float(mel_l1.detach())}
        if float(o["lambda_stft"]):
            resolutions = o["stft_resolutions"] or losses.STFT_LOSS_RESOLUTIONS
            stft = losses.multi_resolution_stft_loss(fake, real, [tuple(int(v) for v in r) for r in resolutions])
            loss = loss + float(o["lambda_stft"]) * stft
            metrics["stft"] = float(stft.detach())
        if dur_loss is not None:
            loss = loss + float(o["lambda_dur"]) * dur_loss
            metrics["dur_loss"] = float(dur_loss.detach())
        if self.adversarial(step):
            scores, feats = self.disc(torch.cat([real, fake]))
            n = real.shape[0]
            adv = _scalar(losses.lsgan_generator_loss([s[n:] for s in scores]))
            fm = _scalar(losses.feature_matching_loss([[f[:n] for f in fs] for fs in feats],
                                                      [[f[n:] for f in fs] for fs in feats]))
            loss = loss + adv + float(o["lambda_fm"]) * fm
            metrics.update({"adv": float(adv.detach()), "fm": float(fm.detach())})
        return loss, metrics

    # ------------------------------------------------------------------ validation
    def valid_examples(self, limit: int | None = None) -> list[tuple[str, dict[str, Tensor]]]:
        data = self.valid_data
        if data is None:
            return []
        step = self.cfg.hop_length if self.cfg.input == "mel" else self.cfg.unit_hop
        max_frames = max(1, int(float(self.opts["valid_max_seconds"]) * self.cfg.sample_rate) // step)
        out = []
        for u in data.utts[:limit]:
            wav = data.wave(u)
            if wav is None:
                continue
            ex = data.example(u, wav, 0, min(u.num_frames, max_frames))
            batch = {k: v.unsqueeze(0) for k, v in ex.items()}
            if self.cfg.duration_predictor:
                batch.update(pad_runs([u]))
            out.append((u.id, batch))
        return out

    def _run_valid(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        device = next(unwrap_model(self.model).parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        real = batch["wave"].unsqueeze(1)
        real_mel = self.mel_of(real)
        model = unwrap_model(self.model)
        x = self.conditioning(batch, real_mel)
        dur = None
        if self.cfg.duration_predictor:
            fake, dur = model(x, durations=(batch["dp_ids"], batch["dp_durations"], batch["dp_mask"]))
        else:
            fake = model(x)
        fake = fake[..., : real.shape[-1]]
        return real_mel, self.mel_of(fake), fake, dur

    def validate(self, step: int) -> dict[str, float]:
        examples = self.valid_examples()
        if not examples:
            return {}
        mel_l1, dur = [], []
        for _uid, batch in examples:
            real_mel, fake_mel, _fake, d = self._run_valid(batch)
            mel_l1.append(float((real_mel - fake_mel).abs().mean()))
            if d is not None:
                dur.append(float(d))
        out = {"mel_l1": float(np.mean(mel_l1))}
        if dur:
            out["dur_loss"] = float(np.mean(dur))
        return out

    def media(self, step: int) -> dict[str, dict[str, Any]]:
        """A few validation utterances: generated audio and real-vs-generated mel images."""
        audio: dict[str, Any] = {}
        images: dict[str, Any] = {}
        with torch.no_grad():
            for uid, batch in self.valid_examples(int(self.opts["media_utts"])):
                real_mel, fake_mel, fake, _ = self._run_valid(batch)
                audio[f"generated/{uid}"] = (fake[0, 0].float().cpu().numpy(), self.cfg.sample_rate)
                images[f"mel/{uid}"] = mel_image(real_mel[0].float().cpu().numpy(), fake_mel[0].float().cpu().numpy())
        return {"audio": audio, "images": images}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"skipped_in": dict(self.crops.skipped_in)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.crops.skipped_in = {str(k): int(v) for k, v in state.get("skipped_in", {}).items()}

    def export(self, path: Any, step: int | None = None) -> None:
        model = unwrap_model(self.model)
        extra = self.model_extra()
        if step is not None:
            extra["step"] = int(step)
        save_vocoder(path, model, extra=extra)


def mel_image(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Real (left) and generated (right) log-mel spectrograms side by side, as an HxWx3 uint8 image."""
    return panels_image([("real", real), ("generated", fake)], shared_scale=True)
