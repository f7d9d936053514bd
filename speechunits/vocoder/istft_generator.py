"""iSTFT generator in the style of Vocos (Siuzdak 2023): a ConvNeXt backbone at frame rate predicts
the STFT (log-magnitude and phase angle) and an inverse STFT makes the waveform.

From the paper's description:

- ``embed``: Conv1d (kernel 7) to ``dim`` channels, then LayerNorm;
- ``num_layers`` ConvNeXt blocks: depthwise Conv1d (kernel 7), LayerNorm, Linear ``dim -> intermediate_dim``,
  GELU, Linear back, per-channel layer scale (initialised to ``1 / num_layers``), residual;
- a final LayerNorm and a Linear to ``n_fft + 2`` = ``(n_fft / 2 + 1) * 2`` values per frame: log-magnitude
  ``m`` and phase angle ``p``; ``S = exp(min(m, log 100)) * (cos p + i sin p)``;
- inverse STFT with ``hop_length``, Hann window of ``n_fft`` (default ``4 * hop_length``) and "same"
  padding: frame ``t`` is centred on sample ``t * hop + hop / 2`` (the mel front end's
  ``(n_fft - hop) / 2`` reflect-padding convention), the overlap-add is normalised by the summed
  squared window, and ``(n_fft - hop) / 2`` samples are trimmed from each end (the extra one from the end when odd), so the output has
  exactly ``F * hop_length`` samples.

No upsampling layers: all the work runs at frame rate, which is why it is fast on a CPU.

``phase="instantaneous"`` (this toolkit's option, not Vocos's) predicts each bin's phase
*advance* per frame instead of its absolute angle: ``phase[t, k] = sum_{s <= t} (2 pi k hop /
n_fft + pi * tanh(d[s, k]))``, the advance of a sinusoid at the bin centre plus a bounded
deviation (a phase-vocoder parameterisation; the instantaneous frequency is what a
mel spectrogram actually determines). A convolutional backbone is translation-equivariant,
so on a stationary input it outputs the same values every frame: with absolute angles that
is a wrong, constant phase for most bins, with advances it is a coherent sinusoid. Short
(CPU) runs learn voiced speech much faster with it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechunits.errors import ConfigError

MAX_LOG_MAGNITUDE = math.log(100.0)
"""Magnitudes are clipped at 100 (exp of this) to keep early training stable."""
PHASE_MODES = ("absolute", "instantaneous")


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> Linear -> GELU -> Linear -> layer scale -> residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:  # [B, dim, F]
        y = self.dwconv(x).transpose(1, 2)  # [B, F, dim]
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: ``[B, n_fft // 2 + 1, F]`` complex -> ``[B, F * hop]``."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if n_fft < hop_length:
            raise ConfigError(None, f"istft n_fft ({n_fft}) must be >= hop_length ({hop_length})")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.pad = (n_fft - hop_length) // 2  # trimmed at the start; the rest (one more when odd) at the end
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, spec: Tensor) -> Tensor:
        frames = spec.shape[-1]
        total = (frames - 1) * self.hop_length + self.n_fft
        win = self.window.to(spec.real.dtype)
        y = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward") * win[None, :, None]  # [B, n_fft, F]
        fold = dict(output_size=(1, total), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        keep = slice(self.pad, self.pad + frames * self.hop_length)
        y = nn.functional.fold(y, **fold)[:, 0, 0, keep]
        env = nn.functional.fold((win * win)[None, :, None].expand(1, -1, frames), **fold)[0, 0, 0, keep]
        return y / env.clamp_min(1e-11)


class ISTFTGenerator(nn.Module):
    """``[B, in_channels, F] -> [B, 1, F * hop_length]`` (Vocos-style ConvNeXt + iSTFT head)."""

    def __init__(
        self,
        in_channels: int,
        hop_length: int,
        dim: int = 384,
        intermediate_dim: int = 1152,
        num_layers: int = 8,
        n_fft: int | None = None,
        kernel_size: int = 7,
        layer_scale: float | None = None,
        phase: str = "absolute",
    ) -> None:
        super().__init__()
        if hop_length < 1 or dim < 1 or intermediate_dim < 1 or num_layers < 0:
            raise ConfigError(None, "istft generator: hop_length, dim and intermediate_dim must be positive, "
                                    "num_layers >= 0")
        if phase not in PHASE_MODES:
            raise ConfigError(None, f"istft generator: phase must be one of {list(PHASE_MODES)}, got {phase!r}")
        self.phase_mode = phase
        n_fft = 4 * hop_length if n_fft is None else int(n_fft)
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.embed = nn.Conv1d(in_channels, dim, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        scale = 1.0 / max(num_layers, 1) if layer_scale is None else layer_scale
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, scale, kernel_size) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length)
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        self.register_buffer("bin_advance", (2 * math.pi * bins * hop_length / n_fft).remainder(2 * math.pi).float(),
                             persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def spectrum(self, cond: Tensor, log_mag_prior: Tensor | None = None) -> Tensor:
        """The predicted complex STFT ``[B, n_fft // 2 + 1, F]``; ``log_mag_prior`` (same shape, e.g. the
        pseudo-inverse of a mel spectrogram) is added to the predicted log-magnitude, which is then a residual."""
        x = self.embed(cond)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.out(self.final_norm(x.transpose(1, 2))).transpose(1, 2)  # [B, n_fft + 2, F]
        log_mag, phase = x.float().chunk(2, dim=1)
        if log_mag_prior is not None:
            log_mag = log_mag + log_mag_prior.float()
        if self.phase_mode == "instantaneous":
            advance = self.bin_advance[None, :, None] + math.pi * torch.tanh(phase)
            phase = torch.cumsum(advance.double(), dim=-1).remainder(2 * math.pi).float()  # float64: long sums
        mag = torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE))
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, cond: Tensor, log_mag_prior: Tensor | None = None) -> Tensor:
        return self.istft(self.spectrum(cond, log_mag_prior)).unsqueeze(1)

    def remove_weight_norm(self) -> None:
        """No weight norm here; present so every generator has the same inference call."""
