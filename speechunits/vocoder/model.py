"""The vocoder model (front end + generator + optional duration predictor) and its file format.

A vocoder file is one ``torch.save`` dict, written atomically::

    {"format": "speechunits.vocoder/1", "config": VocoderConfig.to_dict(),
     "state_dict": Vocoder.state_dict(), "extra": {...}}

``extra`` holds what inference needs besides the weights: the speaker map
(``{"speakers": {name: index}}``), the F0 normalisation (``log_f0_mean``/``log_f0_std``),
the training step. :func:`load_vocoder` raises :class:`CheckpointError` naming the file for a
missing, truncated, foreign or mismatched file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from speechunits.errors import CheckpointError, ConfigError
from speechunits.features.mel import mel_pseudo_inverse
from speechunits.train.checkpoint import load_torch_file, save_torch_file
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.duration import DurationPredictor
from speechunits.vocoder.frontends import build_frontend
from speechunits.vocoder.generators import build_generator
from speechunits.vocoder.inputs import VocoderInputs

FORMAT = "speechunits.vocoder/1"


class Vocoder(nn.Module):
    """``VocoderInputs`` -> waveform ``[B, 1, F * hop_length]``."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = build_frontend(cfg)
        self.generator = build_generator(cfg.generator, cfg.cond_dim, cfg.hop_length, dict(cfg.generator_overrides))
        self.duration = (DurationPredictor(int(cfg.vocab_size), cfg.duration_channels, cfg.duration_kernel,
                                           cfg.duration_dropout) if cfg.duration_predictor else None)
        self.extra: dict[str, Any] = {}
        """Inference metadata restored by :func:`load_vocoder` (speaker map, F0 statistics)."""
        if cfg.magnitude_prior:
            # FreeV-style amplitude prior (Lv et al., 2024): the generator predicts a residual on top of
            # the pseudo-inverse of the mel filterbank applied to the input mels (fixed, rebuilt from cfg)
            self.register_buffer("mel_pinv", mel_pseudo_inverse(cfg.mel, int(self.generator.n_fft)), persistent=False)

    def magnitude_prior(self, x: VocoderInputs) -> Tensor | None:
        """``log(max(|pinv @ exp(mel)|, 1e-5))`` ``[B, n_fft // 2 + 1, F]``, or None without ``magnitude_prior``."""
        if not self.cfg.magnitude_prior:
            return None
        if x.mel is None:
            raise ConfigError(None, "magnitude_prior: the inputs hold no mel spectrogram")
        linear = torch.einsum("km,bmf->bkf", self.mel_pinv, torch.exp(x.mel.float()))
        return torch.log(linear.abs().clamp_min(1e-5))  # |.|: the pseudo-inverse can go negative (FreeV)

    def forward(self, x: VocoderInputs, durations: tuple[Tensor, Tensor, Tensor] | None = None) -> Any:
        """The waveform; with ``durations=(ids, durations, mask)`` also the duration predictor's loss
        (one forward for both, so DDP sees every parameter used in it)."""
        prior = self.magnitude_prior(x)
        cond = self.frontend(x)
        wave = self.generator(cond) if prior is None else self.generator(cond, log_mag_prior=prior)
        if durations is None:
            return wave
        if self.duration is None:
            raise ConfigError(None, "this vocoder has no duration predictor (duration_predictor: false)")
        return wave, self.duration.loss(*durations, per_utterance=True)


def save_vocoder(path: str | os.PathLike[str], model: Vocoder, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (its config, weights and ``extra``) atomically to ``path``."""
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state,
               "extra": {**model.extra, **(extra or {})}}
    save_torch_file(path, payload)


def load_vocoder(path: str | os.PathLike[str], map_location: Any = "cpu") -> Vocoder:
    """The model saved by :func:`save_vocoder`, in eval mode; CheckpointError naming ``path`` otherwise."""
    path = Path(path)
    payload = load_torch_file(path, (FORMAT,), "vocoder file", map_location)
    try:
        cfg = VocoderConfig.from_dict(payload["config"])
    except (KeyError, ConfigError) as err:
        raise CheckpointError(path, f"bad vocoder config in the file ({err})") from None
    model = Vocoder(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(path, f"weights do not fit the stored config ({err})") from None
    model.extra = dict(payload.get("extra") or {})
    return model.eval()
