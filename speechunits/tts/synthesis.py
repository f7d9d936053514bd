"""Inference with a Capacitron model: text (+ reference) -> log-mel, attention, KL.

Four ways to choose the prosody embedding, one utterance at a time, all seedable (the seed
fixes the prior or posterior sample *and* the prenet's dropout, which Tacotron2 keeps on at
inference):

* ``text``: a prior sample at ``temperature`` (0 gives the prior mean; hierarchical models
  draw ``z_p`` from ``p(z_p | z_s)`` at the same temperature);
* ``transfer``: the posterior of a reference recording of the *same* text;
* ``style``: the posterior of a reference with its *own* transcript, applied to new text.
  Models whose posterior reads the text (V+T, V+T+S, hierarchical) need that transcript: a
  reference without one is a :class:`ConfigError` that says what to pass;
* with ``posterior_mean`` the posterior's mean replaces its sample. For hierarchical models
  ``level="z_s"`` transfers only ``z_s`` and samples ``z_p`` from the conditional prior.

V+T+S models take the reference's speaker for the posterior and the target ``speaker`` for
the decoder: inter-speaker transfer. Plain Tacotron2 ignores every prosody option.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from speechunits.audio import load_audio
from speechunits.errors import ConfigError
from speechunits.features.mel import LogMel
from speechunits.tts.model_io import TTSModelInfo
from speechunits.tts.tacotron import Capacitron

MODES = ("text", "transfer", "style")


@dataclass
class SynthesisRequest:
    """One utterance to synthesize."""

    id: str
    text: str
    mode: str = "text"
    reference_audio: str | None = None
    reference_text: str | None = None
    reference_speaker: str | None = None
    speaker: str | None = None
    seed: int = 0
    temperature: float = 1.0
    posterior_mean: bool = False
    level: str = "z_p"


@dataclass
class SynthesisResult:
    """The log-mel ``[T, n_mels]`` (not normalised), attention ``[steps, symbols]`` and diagnostics."""

    log_mel: np.ndarray
    attention: np.ndarray
    steps: int
    stop_fired: bool
    num_symbols: int
    kl: float | None
    prosody_mean: list[float] | None = None  # the reference's posterior mean (what latent probes read)


def _device(model: Capacitron) -> torch.device:
    return next(model.parameters()).device


def encode_text(info: TTSModelInfo, text: str, what: str) -> Tensor:
    """``[1, N]`` symbol ids of ``text`` through the model's own front end and table."""
    if not text or not text.strip():
        raise ConfigError(None, f"{what}: empty text")
    return torch.tensor([info.table.encode(info.frontend(text))], dtype=torch.long)


def speaker_tensor(info: TTSModelInfo, speaker: str | None, model: Capacitron) -> Tensor | None:
    """The speaker index of a multi-speaker model; ConfigError naming the known speakers."""
    if model.speaker is None:
        return None
    if speaker is None:
        if len(info.speakers) == 1:
            speaker = next(iter(info.speakers))
        else:
            raise ConfigError(info.path, f"this model has {len(info.speakers)} speakers: pass --speaker (one of "
                                         f"{sorted(info.speakers)[:10]}...)")
    if speaker not in info.speakers:
        raise ConfigError(info.path, f"unknown speaker {speaker!r}; the model knows {sorted(info.speakers)[:10]}...")
    return torch.tensor([info.speakers[speaker]])


def reference_mel(model: Capacitron, path: str) -> Tensor:
    """``[1, T, n_mels]`` normalised log-mel of a reference recording (any rate/channels: converted)."""
    wave = load_audio(path, target_sr=model.cfg.mel.sample_rate)
    mel = LogMel(model.cfg.mel)(torch.from_numpy(wave)).T
    return model.normalize(mel.to(_device(model))).unsqueeze(0)


def check_request(model: Capacitron, req: SynthesisRequest) -> None:
    """ConfigError, before any work, for a request this model cannot honour (says what to pass)."""
    if req.mode not in MODES:
        raise ConfigError(None, f"mode {req.mode!r}: expected one of {', '.join(MODES)}")
    if model.prosody is None or req.mode == "text":
        return
    if not req.reference_audio:
        raise ConfigError(None, f"{req.id}: mode {req.mode} needs a reference recording (--reference)")
    cfg = model.cfg.prosody
    if cfg.uses_text and req.mode == "style" and not (req.reference_text and req.reference_text.strip()):
        raise ConfigError(None, f"{req.id}: this model's posterior (prosody kind {cfg.kind}) is conditioned on the "
                                "reference's transcript, and the style reference has none: pass --reference-text "
                                "(or --style-data with transcripts), use --mode transfer with the reference's own "
                                "text, or --mode text to sample the prior")


def prosody_embedding(model: Capacitron, info: TTSModelInfo, req: SynthesisRequest,
                      generator: torch.Generator) -> tuple[Tensor | None, float | None, Tensor | None]:
    """The embedding for ``req`` and, with a reference, its posterior KL (nats, all levels) and mean."""
    if model.prosody is None:
        return None, None, None
    device = _device(model)
    if req.mode == "text":
        return model.prosody.sample_prior(1, float(req.temperature), device, generator), None, None
    check_request(model, req)
    ref_text = req.text if req.mode == "transfer" else req.reference_text
    text_ids = lengths = None
    encoded = None
    if model.cfg.prosody.uses_text:
        text_ids = encode_text(info, ref_text or "", f"{req.id} reference text").to(device)
        lengths = torch.tensor([text_ids.shape[1]], device=device)
        encoded = model.encoder(text_ids, lengths)
    mel = reference_mel(model, req.reference_audio)
    spk = speaker_tensor(info, req.reference_speaker or req.speaker, model)
    spk_vec = model.speaker(spk.to(device)) if spk is not None and model.speaker is not None else None
    out = model.prosody(mel, torch.tensor([mel.shape[1]], device=device), encoded, lengths, spk_vec,
                        sample=not req.posterior_mean, level=req.level, temperature=float(req.temperature))
    return out.embedding, float(out.kl.sum()), out.posterior_mean


@torch.no_grad()
def synthesize(model: Capacitron, info: TTSModelInfo, req: SynthesisRequest, *,
               max_frames_per_symbol: float = 15.0) -> SynthesisResult:
    """One utterance (see the module docstring); deterministic for a given ``req.seed``."""
    model.eval()
    device = _device(model)
    torch.manual_seed(int(req.seed))
    generator = torch.Generator().manual_seed(int(req.seed))
    prosody, kl, mean = prosody_embedding(model, info, req, generator)
    text = encode_text(info, req.text, req.id).to(device)
    spk = speaker_tensor(info, req.speaker, model)
    out = model.infer(text, torch.tensor([text.shape[1]], device=device), prosody,
                      None if spk is None else spk.to(device), max_frames_per_symbol)
    steps = int(out.steps[0])
    frames = steps * model.cfg.tacotron.reduction
    log_mel = model.denormalize(out.mel_after[0, :frames]).float().cpu().numpy()
    attention = out.attention[0, :steps].float().cpu().numpy()
    return SynthesisResult(log_mel, attention, steps, bool(out.stop_fired[0]), int(text.shape[1]), kl,
                           None if mean is None else [float(v) for v in mean[0].float().cpu()])


__all__ = ["MODES", "SynthesisRequest", "SynthesisResult", "check_request", "encode_text", "prosody_embedding", "reference_mel",
           "speaker_tensor", "synthesize"]
