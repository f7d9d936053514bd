"""The generator registry: ``build_generator(name, in_channels, hop_length, overrides)``.

Every generator maps conditioning ``[B, in_channels, F]`` to a waveform ``[B, 1, F * hop_length]``
exactly, and has ``remove_weight_norm()`` (a no-op for ``istft``) to call before inference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from speechunits.errors import ConfigError
from speechunits.vocoder.hifigan import HiFiGANGenerator, factor_hop
from speechunits.vocoder.istft_generator import ISTFTGenerator

GENERATORS: dict[str, dict[str, Any]] = {
    # Kong et al. 2020, Appendix A. upsample_rates None: factor_hop(hop_length) (the paper's
    # [8, 8, 2, 2] at hop 256 for V1/V2, [8, 8, 4] for V3); upsample_kernel_sizes None: 2 * rate.
    "hifigan_v1": {
        "upsample_initial_channel": 512, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "upsample_rates": None, "upsample_kernel_sizes": None, "num_stages": 4,
    },
    "hifigan_v2": {
        "upsample_initial_channel": 128, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "upsample_rates": None, "upsample_kernel_sizes": None, "num_stages": 4,
    },
    "hifigan_v3": {
        "upsample_initial_channel": 256, "resblock": "2", "resblock_kernel_sizes": [3, 5, 7],
        "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]],
        "upsample_rates": None, "upsample_kernel_sizes": None, "num_stages": 3,
    },
    # Vocos-style (Siuzdak 2023), smaller than Vocos' 512/1536 so that it is quick on a CPU.
    "istft": {"dim": 384, "intermediate_dim": 1152, "num_layers": 8, "n_fft": None, "kernel_size": 7,
              "layer_scale": None, "phase": "absolute"},
}
"""name -> default hyperparameters; ``overrides`` may change any of these keys and no others."""


def generator_params(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``name`` with ``overrides`` applied (ConfigError on an unknown name or key)."""
    if name not in GENERATORS:
        raise ConfigError(None, f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    params = copy.deepcopy(GENERATORS[name])
    unknown = sorted(set(overrides or {}) - set(params))
    if unknown:
        raise ConfigError(None, f"unknown {name} generator options {unknown}; known: {sorted(params)}")
    params.update({k: copy.deepcopy(v) for k, v in (overrides or {}).items()})
    return params


def build_generator(name: str, in_channels: int, hop_length: int,
                    overrides: Mapping[str, Any] | None = None) -> nn.Module:
    """A generator ``[B, in_channels, F] -> [B, 1, F * hop_length]``; see :data:`GENERATORS`.

    HiFi-GAN: without ``upsample_rates`` the hop is factored by :func:`factor_hop` into
    ``num_stages`` rates (ConfigError when it has a prime factor above 10); explicit rates must
    multiply to ``hop_length``.
    """
    params = generator_params(name, overrides)
    if int(hop_length) != hop_length or hop_length < 1:
        raise ConfigError(None, f"hop_length must be a positive integer, got {hop_length}")
    if name == "istft":
        return ISTFTGenerator(in_channels, int(hop_length), **params)
    num_stages = params.pop("num_stages")
    rates = params.pop("upsample_rates")
    if rates is None:
        rates = factor_hop(int(hop_length), num_stages)
    else:
        product = 1
        for r in rates:
            product *= int(r)
        if product != hop_length:
            raise ConfigError(None, f"{name}: upsample_rates {list(rates)} multiply to {product}, "
                                    f"not hop_length {hop_length}")
    return HiFiGANGenerator(in_channels, rates, **params)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (with weight norm: both ``g`` and ``v``, as when training)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
