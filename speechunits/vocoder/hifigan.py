"""HiFi-GAN generator (Kong et al. 2020): transposed-conv upsampling with multi-receptive-field fusion.

Written from the paper's description (Sec. 2.1, Appendix A):

- ``conv_pre`` (kernel 7) maps the conditioning to ``upsample_initial_channel`` channels;
- each upsampling stage is leaky ReLU (slope 0.1) then a transposed convolution with stride
  ``rate`` and kernel ``2 * rate`` that halves the channel count, followed by the MRF module:
  the mean of ``len(resblock_kernel_sizes)`` residual blocks with different kernels/dilations;
- residual block type 1 (V1, V2): per dilation ``d``, ``x += conv_k(d=1)(lrelu(conv_k(d)(lrelu(x))))``;
  type 2 (V3): per dilation ``d``, ``x += conv_k(d)(lrelu(x))``;
- leaky ReLU, ``conv_post`` (kernel 7) to one channel, tanh.

Every convolution carries weight normalisation (removed for inference by
:meth:`HiFiGANGenerator.remove_weight_norm`). Output length is exactly ``frames * prod(rates)``:
odd rates use ``padding = (rate + 1) // 2`` and ``output_padding = 1``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from speechunits.errors import ConfigError

LRELU_SLOPE = 0.1
MAX_RATE = 10
"""Largest upsampling factor :func:`factor_hop` will use (kernel 2 * rate = 20)."""


def _wn(module: nn.Module) -> nn.Module:
    return weight_norm(module)


def _init(module: nn.Module) -> None:
    """N(0, 0.01) conv weights (the paper's implementation detail), zero biases."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(module.weight, 0.0, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _same_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel - 1) * dilation // 2


def factor_hop(hop_length: int, num_stages: int | None = None, max_rate: int = MAX_RATE) -> list[int]:
    """Split ``hop_length`` into upsampling rates (descending, each 2..``max_rate``) whose product is the hop.

    Prefers ``num_stages`` stages (default: 4, then 3), then any other count from 1 to 6.
    Among the factorizations with that many stages, factors of at most 8 are preferred (kernel
    16, as in the paper), and then the lexicographically largest (big rates first): 256 ->
    [8, 8, 2, 2] (the paper's V1), [8, 8, 4] with 3 stages (V3); 160 -> [8, 5, 2, 2];
    320 -> [8, 5, 4, 2]; 441 -> [7, 7, 3, 3]. Raises :class:`ConfigError` when ``hop_length``
    has a prime factor above ``max_rate`` (e.g. a prime hop such as 251).
    """
    if hop_length < 1:
        raise ConfigError(None, f"hop_length must be a positive integer, got {hop_length}")
    if hop_length == 1:
        return [1]
    preferred = [num_stages] if num_stages else [4, 3]
    counts = preferred + [n for n in (4, 3, 5, 2, 6, 1) if n not in preferred]
    for n in counts:
        for cap in sorted({min(8, max_rate), max_rate}):
            best: tuple[int, ...] | None = None
            for combo in itertools.combinations_with_replacement(range(cap, 1, -1), n):
                if math.prod(combo) == hop_length and (best is None or combo > best):
                    best = combo
            if best is not None:
                return list(best)
    raise ConfigError(None, f"hop_length {hop_length} cannot be split into upsampling rates of at most "
                            f"{max_rate} (it has a prime factor above {max_rate}); pick another hop or set "
                            "generator_overrides.upsample_rates")


class ResBlock1(nn.Module):
    """Type-1 residual block: per dilation, lrelu -> dilated conv -> lrelu -> conv -> add."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)))
            for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            y = c1(nn.functional.leaky_relu(x, LRELU_SLOPE))
            y = c2(nn.functional.leaky_relu(y, LRELU_SLOPE))
            x = x + y
        return x


class ResBlock2(nn.Module):
    """Type-2 residual block (V3): per dilation, lrelu -> dilated conv -> add."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)))
            for d in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c in self.convs:
            x = x + c(nn.functional.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """``[B, in_channels, F] -> [B, 1, F * prod(upsample_rates)]`` in [-1, 1]."""

    def __init__(
        self,
        in_channels: int,
        upsample_rates: Sequence[int],
        upsample_initial_channel: int = 512,
        resblock: str = "1",
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        upsample_kernel_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        rates = [int(r) for r in upsample_rates]
        kernels = [2 * r if r > 1 else 1 for r in rates] if upsample_kernel_sizes is None else [int(k) for k in upsample_kernel_sizes]
        if not rates or any(r < 1 for r in rates):
            raise ConfigError(None, f"upsample_rates must be positive integers, got {list(upsample_rates)}")
        if len(kernels) != len(rates) or any(k < r for k, r in zip(kernels, rates)):
            raise ConfigError(None, f"upsample_kernel_sizes {kernels} must match upsample_rates {rates} "
                                    "one to one, each at least its rate")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ConfigError(None, "resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if str(resblock) not in ("1", "2"):
            raise ConfigError(None, f"resblock must be '1' or '2', got {resblock!r}")
        if upsample_initial_channel // 2 ** len(rates) < 1:
            raise ConfigError(None, f"upsample_initial_channel {upsample_initial_channel} is too small to halve "
                                    f"{len(rates)} times")
        self.upsample_rates = rates
        self.hop_length = math.prod(rates)
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = _wn(nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for rate, kernel in zip(rates, kernels):
            pad = (kernel - rate + 1) // 2
            out_pad = 2 * pad - (kernel - rate)  # 0 when kernel - rate is even, else 1: length F * rate exactly
            self.ups.append(_wn(nn.ConvTranspose1d(ch, ch // 2, kernel, stride=rate, padding=pad,
                                                   output_padding=out_pad)))
            ch //= 2
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, int(k), [int(x) for x in d]))
        self.conv_post = _wn(nn.Conv1d(ch, 1, 7, padding=3))
        self.apply(_init)

    def forward(self, cond: Tensor) -> Tensor:
        x = self.conv_pre(cond)
        for i, up in enumerate(self.ups):
            x = up(nn.functional.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            acc = blocks[0](x)
            for b in blocks[1:]:
                acc = acc + b(x)
            x = acc / self.num_kernels
        x = self.conv_post(nn.functional.leaky_relu(x, LRELU_SLOPE))
        return torch.tanh(x)

    def remove_weight_norm(self) -> None:
        """Fold the weight-norm parametrizations into plain weights (for inference; irreversible)."""
        for m in self.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
