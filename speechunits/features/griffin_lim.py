"""Griffin-Lim inversion of a :class:`~speechunits.features.mel.LogMel` spectrogram (the no-training baseline).

``exp`` undoes the log, ``torchaudio``'s ``InverseMelScale`` (non-negative least squares
through the same Slaney filterbank) gives a linear magnitude spectrogram, and
``torchaudio``'s ``GriffinLim`` (power 1: magnitudes, momentum 0.99) estimates the phase.
GriffinLim frames with ``center=True`` (frame ``i`` centred on sample ``i * hop``) while
LogMel's frame ``i`` is centred on ``i * hop + hop / 2``, so the result is delayed by
``hop // 2`` samples and cut to ``F * hop``: it lines up with the wave the mel came from.
The random initial phase is drawn from a fixed seed, so the output is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from speechunits.features.mel import MelConfig


def griffin_lim(log_mel: Tensor, cfg: MelConfig, n_iter: int = 32, seed: int = 0) -> Tensor:
    """``[n_mels, F]`` log-mel -> ``[F * hop_length]`` float32 waveform on the same device."""
    import torchaudio.transforms as tat

    if log_mel.dim() != 2 or log_mel.shape[0] != cfg.n_mels:
        raise ValueError(f"griffin_lim expects a log-mel [n_mels={cfg.n_mels}, F], got shape {tuple(log_mel.shape)}")
    frames = log_mel.shape[1]
    length = frames * cfg.hop_length
    device = log_mel.device
    if frames == 0:
        return torch.zeros(0, device=device)
    inverse = tat.InverseMelScale(cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate,
                                  f_min=cfg.f_min, f_max=cfg.f_max, norm="slaney", mel_scale="slaney").to(device)
    phase = tat.GriffinLim(n_fft=cfg.n_fft, n_iter=n_iter, win_length=cfg.win_length, hop_length=cfg.hop_length,
                           power=1.0, length=length, rand_init=True).to(device)
    with torch.no_grad():
        mag = inverse(torch.exp(log_mel.float()))
        # GriffinLim frames with centre=True: one extra frame so the shifted wave still covers F * hop samples
        mag = torch.cat([mag, mag[:, -1:]], dim=1)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            wave = phase(mag)
    shift = cfg.hop_length // 2
    return torch.nn.functional.pad(wave, (shift, 0))[:length].float()


__all__ = ["griffin_lim"]
