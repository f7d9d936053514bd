"""Inference from files: unit records (or mel frames) -> vocoder inputs -> waveform.

* :func:`inputs_from_record`: a unit set's record as one-item :class:`VocoderInputs`: stored
  durations (the record's frames, gaps = silence, over the audio's unit frames) or predicted
  ones (the model's duration predictor on the deduplicated ids, gaps as silence tokens; the
  stored durations are ignored).
* :func:`inputs_from_mel`: log-mel frames for a mel vocoder.
* :func:`synthesize_inputs`: run the model, return the float32 waveform of the valid frames.
* :func:`synthesize_ids`: a bare id sequence (e.g. an LM's output) -> waveform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speechunits.errors import ConfigError, UnitFormatError
from speechunits.features.f0 import f0_to_frames
from speechunits.units.export import runs_with_silence
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.data import normalise_f0, token_frames
from speechunits.vocoder.inputs import VocoderInputs
from speechunits.vocoder.model import Vocoder


def _model_device(model: Vocoder) -> torch.device:
    return next(model.parameters()).device


def predict_frame_ids(model: Vocoder, ids: Sequence[int]) -> np.ndarray:
    """Expand deduplicated ids by the model's predicted durations (unit frames, >= 1 each)."""
    if model.duration is None:
        raise ConfigError(None, "the vocoder has no duration predictor (trained with duration_predictor: false); "
                                "use the stored durations")
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    device = _model_device(model)
    t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device).unsqueeze(0)
    with torch.no_grad():
        durs = model.duration.predict(t, torch.ones_like(t, dtype=torch.bool))[0].cpu().numpy()
    return np.repeat(np.asarray(ids, dtype=np.int64), durs)


def _f0_inputs(cfg: VocoderConfig, f0_hz: np.ndarray | None, f0_hop_seconds: float | None, mel_frames: int,
               original_frames: int, stats: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Normalised log-F0 and voicing on ``mel_frames`` frames; a track for ``original_frames``
    frames (another length: predicted durations) is stretched linearly onto them."""
    if not cfg.use_f0:
        return None
    if f0_hz is None or f0_hop_seconds is None:
        raise ConfigError(None, "the vocoder is F0-conditioned: give the stored F0 (--f0 F0_DIR)")
    frame_hop = cfg.hop_length / cfg.sample_rate * (original_frames / max(mel_frames, 1))
    track = f0_to_frames(np.asarray(f0_hz, dtype=np.float32), f0_hop_seconds, mel_frames, frame_hop)
    log_f0, voiced = normalise_f0(track, stats[0], stats[1], mel_frames)
    return torch.from_numpy(log_f0[:mel_frames]).unsqueeze(0), torch.from_numpy(voiced[:mel_frames]).unsqueeze(0)


def f0_stats(model: Vocoder) -> tuple[float, float]:
    return float(model.extra.get("log_f0_mean", 0.0)), float(model.extra.get("log_f0_std", 1.0))


def speaker_index(model: Vocoder, speaker: str | int | None) -> int | None:
    """The model's index of a speaker name (an int is taken as the index); None without conditioning."""
    if not model.cfg.num_speakers:
        return None
    if speaker is None:
        raise ConfigError(None, "the vocoder is speaker-conditioned: the record has no speaker")
    if isinstance(speaker, int):
        index = speaker
    else:
        speakers = model.extra.get("speakers") or {}
        if speaker not in speakers:
            raise ConfigError(None, f"speaker {speaker!r} is not one of the vocoder's {len(speakers)} training speakers")
        index = int(speakers[speaker])
    if not 0 <= index < model.cfg.num_speakers:
        raise ConfigError(None, f"speaker index {index} out of range (num_speakers {model.cfg.num_speakers})")
    return index


def inputs_from_record(rec: Any, meta: Any, cfg: VocoderConfig, *, embeddings: np.ndarray | None = None,
                       f0_hz: np.ndarray | None = None, f0_hop_seconds: float | None = None,
                       speaker: int | None = None, predict_durations: bool = False, model: Vocoder | None = None,
                       f0_stats: tuple[float, float] = (0.0, 1.0)) -> VocoderInputs:
    """One unit record as a one-item batch (see the module docstring). ``speaker`` is the model's
    speaker index; ``f0_stats`` the (mean, std) of log-F0 the model was trained with."""
    if cfg.input == "mel":
        raise ConfigError(None, "a mel vocoder reads log-mel frames (inputs_from_mel), not unit records")
    if meta.sample_rate != cfg.sample_rate or meta.hop != cfg.unit_hop:
        raise ConfigError(None, f"unit frame grid {meta.frame_rate} differs from the model's "
                                f"{cfg.sample_rate}/{cfg.unit_hop}")
    audio_frames = meta.audio_frames(rec.num_samples, rec.sample_rate)
    out: dict[str, torch.Tensor] = {}
    if predict_durations:
        if not cfg.uses_ids or model is None:
            raise ConfigError(None, "predicted durations need an id-input vocoder with a duration predictor (model=)")
        if rec.units is None:
            raise UnitFormatError(None, f"utterance {rec.id!r} has no units")
        run_ids, _ = runs_with_silence(meta, rec)
        ids = predict_frame_ids(model, run_ids)
        frames = len(ids)
        out["unit_ids"] = torch.from_numpy(ids).unsqueeze(0)
    else:
        frames = audio_frames
        ids, index = token_frames(rec, meta, cfg, audio_frames)
        if cfg.uses_ids:
            if ids is None:
                raise UnitFormatError(None, f"utterance {rec.id!r} has no units")
            out["unit_ids"] = torch.from_numpy(ids).unsqueeze(0)
        else:
            if embeddings is None:
                raise ConfigError(None, f"utterance {rec.id!r}: a syllable-embedding vocoder needs the embeddings")
            emb = np.asarray(embeddings, dtype=np.float32)
            if emb.shape != (rec.num_tokens, cfg.embedding_dim) or not np.isfinite(emb).all():
                raise UnitFormatError(None, f"utterance {rec.id!r}: embeddings of shape {emb.shape} (or not finite) "
                                            f"for {rec.num_tokens} tokens of dim {cfg.embedding_dim}")
            vec = np.zeros((frames, emb.shape[1]), dtype=np.float32)
            vec[index >= 0] = emb[index[index >= 0]]
            out["unit_vectors"] = torch.from_numpy(vec).unsqueeze(0)
            out["unit_silence"] = torch.from_numpy(index < 0).unsqueeze(0)
    mel_frames = frames * cfg.upsample
    f0 = _f0_inputs(cfg, f0_hz, f0_hop_seconds, mel_frames, audio_frames * cfg.upsample, f0_stats)
    if f0 is not None:
        out["log_f0"], out["voiced"] = f0
    if cfg.num_speakers:
        if speaker is None:
            raise ConfigError(None, f"utterance {rec.id!r}: the vocoder is speaker-conditioned; no speaker given")
        out["speaker"] = torch.tensor([int(speaker)])
    return VocoderInputs(lengths=torch.tensor([mel_frames]), **out)


def inputs_from_mel(log_mel: torch.Tensor, cfg: VocoderConfig, *, f0_hz: np.ndarray | None = None,
                    f0_hop_seconds: float | None = None, speaker: int | None = None,
                    f0_stats: tuple[float, float] = (0.0, 1.0)) -> VocoderInputs:
    """``[n_mels, F]`` log-mel frames as a one-item batch."""
    frames = int(log_mel.shape[-1])
    out: dict[str, torch.Tensor] = {"mel": log_mel.reshape(1, cfg.mel.n_mels, frames).float()}
    f0 = _f0_inputs(cfg, f0_hz, f0_hop_seconds, frames, frames, f0_stats)
    if f0 is not None:
        out["log_f0"], out["voiced"] = f0
    if cfg.num_speakers:
        if speaker is None:
            raise ConfigError(None, "the vocoder is speaker-conditioned; no speaker given")
        out["speaker"] = torch.tensor([int(speaker)])
    return VocoderInputs(lengths=torch.tensor([frames]), **out)


def synthesize_inputs(model: Vocoder, x: VocoderInputs) -> np.ndarray:
    """The float32 waveform (at ``model.cfg.mel.sample_rate``) of a one-item batch's valid frames."""
    if x.batch_size != 1:
        raise ConfigError(None, f"synthesize_inputs takes one utterance, got a batch of {x.batch_size}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            wave = model(x.to(_model_device(model)))
    finally:
        model.train(was_training)
    n = int(x.lengths[0]) * model.cfg.hop_length
    return wave[0, 0, :n].float().cpu().numpy().astype(np.float32)


def synthesize_ids(model: Vocoder, ids: Sequence[int], speaker: str | int | None = None) -> np.ndarray:
    """A bare id sequence (an LM's output, deduplicated; silence ids allowed) -> waveform.

    With a duration predictor the durations are predicted; without one each id is taken as
    one unit frame (a frame-rate sequence as it is).
    """
    cfg = model.cfg
    if not cfg.uses_ids:
        raise ConfigError(None, f"synthesize_ids needs an id-input vocoder, this one reads {cfg.input}"
                                + (" embeddings" if cfg.input == "syllables" else ""))
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < int(cfg.vocab_size)]
    if bad:
        raise ConfigError(None, f"unit ids {bad[:5]} outside the vocabulary of {cfg.vocab_size}")
    frames = predict_frame_ids(model, ids) if model.duration is not None else np.asarray(ids, dtype=np.int64)
    if cfg.use_f0:
        raise ConfigError(None, "synthesize_ids: the vocoder is F0-conditioned and a bare sequence has no F0")
    out: dict[str, torch.Tensor] = {"unit_ids": torch.from_numpy(frames).unsqueeze(0)}
    index = speaker_index(model, speaker)
    if index is not None:
        out["speaker"] = torch.tensor([index])
    return synthesize_inputs(model, VocoderInputs(lengths=torch.tensor([len(frames) * cfg.upsample]), **out))
