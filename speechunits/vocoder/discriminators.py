"""GAN discriminators for waveform vocoders.

Each takes ``wave [B, 1, T]`` and returns ``(scores, features)``: one score tensor per
sub-discriminator (``[B, N]``, any N) and, per sub-discriminator, the list of its intermediate
activations (for the feature-matching loss). Written from the papers' descriptions:

- :class:`MultiPeriodDiscriminator` (HiFi-GAN, Kong et al. 2020): for each period ``p`` the
  waveform is reflect-padded to a multiple of ``p``, reshaped to ``[B, 1, T/p, p]`` and judged by
  2-D convolutions with ``(5, 1)`` kernels (stride 3 along time), weight norm;
- :class:`MultiScaleDiscriminator` (MelGAN / HiFi-GAN): three 1-D strided grouped-conv stacks on
  the raw waveform, x2 and x4 average-pooled; spectral norm on the first, weight norm on the others;
- :class:`MultiResolutionSTFTDiscriminator` (UnivNet / Vocos): 2-D convolutions over linear
  magnitude spectrograms at several STFT resolutions ``(n_fft, hop, win)``, weight norm.

:func:`build_discriminators` makes a ``ModuleDict`` of them by short name (:data:`DISCRIMINATORS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from speechunits.errors import ConfigError

LRELU_SLOPE = 0.1
Output = tuple[list[Tensor], list[list[Tensor]]]


def _lrelu(x: Tensor) -> Tensor:
    return nn.functional.leaky_relu(x, LRELU_SLOPE)


class PeriodDiscriminator(nn.Module):
    """One period of the MPD: ``[B, 1, T] -> [B, 1, ceil(T/p), p]`` -> 2-D conv stack."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                 kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = int(period)
        pad = (kernel_size - 1) // 2
        layers, c_in = [], 1
        for i, c_out in enumerate(channels):
            s = stride if i < len(channels) - 1 else 1  # the last conv keeps the resolution
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(pad, 0))))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = wave.shape
        if t % self.period:
            extra = self.period - t % self.period
            mode = "reflect" if extra < t else "constant"
            wave = nn.functional.pad(wave, (0, extra), mode=mode)
            t += extra
        x = wave.view(b, c, t // self.period, self.period)
        feats = []
        for conv in self.convs:
            x = _lrelu(conv(x))
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's MPD: one :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11: coprime)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wave: Tensor) -> Output:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(wave)
            scores.append(s)
            feats.append(f)
        return scores, feats


class ScaleDiscriminator(nn.Module):
    """One scale of the MSD: strided grouped 1-D convolutions (kernel 41) on the waveform."""

    # (kernel, stride, groups) per layer after the first; the first is (15, 1, 1)
    LAYOUT = ((15, 1, 1), (41, 2, 4), (41, 2, 16), (41, 4, 16), (41, 4, 16), (41, 1, 16), (5, 1, 1))

    def __init__(self, channels: Sequence[int] = (128, 128, 256, 512, 1024, 1024, 1024),
                 use_spectral_norm: bool = False) -> None:
        super().__init__()
        if len(channels) != len(self.LAYOUT):
            raise ConfigError(None, f"scale discriminator needs {len(self.LAYOUT)} channel counts, got {len(channels)}")
        norm = spectral_norm if use_spectral_norm else weight_norm
        layers, c_in = [], 1
        for c_out, (k, s, g) in zip(channels, self.LAYOUT):
            g = g if c_in % g == 0 and c_out % g == 0 else 1
            layers.append(norm(nn.Conv1d(c_in, c_out, k, s, groups=g, padding=(k - 1) // 2)))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.conv_post = norm(nn.Conv1d(c_in, 1, 3, 1, padding=1))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, feats = wave, []
        for conv in self.convs:
            x = _lrelu(conv(x))
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiScaleDiscriminator(nn.Module):
    """MSD: ``num_scales`` scale discriminators on the waveform average-pooled by 1, 2, 4, ..."""

    def __init__(self, num_scales: int = 3,
                 channels: Sequence[int] = (128, 128, 256, 512, 1024, 1024, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, use_spectral_norm=(i == 0)) for i in range(num_scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wave: Tensor) -> Output:
        scores, feats = [], []
        x = wave
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            s, f = d(x)
            scores.append(s)
            feats.append(f)
        return scores, feats


class ResolutionDiscriminator(nn.Module):
    """One STFT resolution: magnitude spectrogram ``[B, 1, frames, bins]`` -> 2-D conv stack
    (kernels (3, 9), stride 2 along frequency)."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32,
                 num_strided: int = 3) -> None:
        super().__init__()
        if win_length > n_fft:
            raise ConfigError(None, f"STFT discriminator: win_length {win_length} > n_fft {n_fft}")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        layers = [weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4)))]
        layers += [weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)))
                   for _ in range(num_strided)]
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, wave: Tensor) -> Tensor:
        x = wave.squeeze(1).float()
        pad = (self.n_fft - self.hop_length) // 2
        mode = "reflect" if pad < x.shape[-1] else "constant"
        x = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window,
                          center=False, return_complex=True)
        return spec.abs().transpose(1, 2).unsqueeze(1)  # [B, 1, frames, bins]

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, feats = self.spectrogram(wave), []
        for conv in self.convs:
            x = _lrelu(conv(x))
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    """MRD over ``resolutions`` ``(n_fft, hop, win)``; ``resolution_scale`` multiplies all three
    (e.g. 0.5 for 16 kHz audio with a 160-sample hop)."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
                 resolution_scale: float = 1.0, channels: int = 32) -> None:
        super().__init__()
        scaled = [tuple(max(1, int(round(v * resolution_scale))) for v in r) for r in resolutions]
        self.resolutions = scaled
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(n, h, w, channels) for n, h, w in scaled)

    def forward(self, wave: Tensor) -> Output:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(wave)
            scores.append(s)
            feats.append(f)
        return scores, feats


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "mpd": MultiPeriodDiscriminator,
    "msd": MultiScaleDiscriminator,
    "mrd": MultiResolutionSTFTDiscriminator,
}
"""Short name -> class. HiFi-GAN uses ``["mpd", "msd"]``; Vocos ``["mpd", "mrd"]``."""


def build_discriminators(names: Sequence[str],
                         overrides: Mapping[str, Mapping[str, Any]] | None = None) -> nn.ModuleDict:
    """``ModuleDict`` name -> discriminator; ``overrides[name]`` holds keyword arguments of that class
    (e.g. ``{"mpd": {"channels": [8, 16, 16, 16, 16]}, "mrd": {"resolution_scale": 0.5}}``)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(names) - set(DISCRIMINATORS)) + sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(None, f"unknown or unused discriminators {unknown}; known: {sorted(DISCRIMINATORS)}")
    if len(set(names)) != len(names) or not names:
        raise ConfigError(None, f"discriminator names must be distinct and non-empty, got {list(names)}")
    out = nn.ModuleDict()
    for name in names:
        try:
            out[name] = DISCRIMINATORS[name](**dict(overrides.get(name, {})))
        except TypeError as err:
            raise ConfigError(None, f"discriminator {name}: {err}") from err
    return out
