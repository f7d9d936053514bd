"""Tacotron2's two attention mechanisms, one step at a time.

* :class:`LocationSensitiveAttention` (Chorowski et al., 2015; Tacotron2): content energies
  ``v^T tanh(W q + V m_j + U f_j)`` where ``f`` convolves the previous and cumulative
  attention weights. Good quality, but content-based: it can skip or repeat on long or odd
  inputs.
* :class:`DynamicConvolutionAttention` (Battenberg et al., 2020): energies from location only,
  ``v^T tanh(U (F * a_prev) + T (G(q) * a_prev)) + log(P * a_prev)``, with static filters
  ``F``, filters ``G(q)`` predicted from the query, and a fixed causal beta-binomial prior
  ``P`` that only moves the alignment forward by 0..prior_length-1 steps. The memory never
  enters the energies, so the alignment is monotonic by construction and generalises to any
  length.

Both share one interface: :meth:`init_state` for a batch, then :meth:`forward` per decoder
step returning ``(context [B, D_mem], weights [B, T_enc], new_state)``. Padded memory
positions get ``-inf`` energies (weight 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechunits.tts.config import TacotronConfig

NEG_INF = -1e9  # a large negative number instead of -inf: no NaN when a row is all masked in bf16


class LocationSensitiveAttention(nn.Module):
    """Additive attention with location features from previous and cumulative weights."""

    def __init__(self, query_dim: int, memory_dim: int, cfg: TacotronConfig) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, cfg.attention_dim, bias=False)
        self.memory = nn.Linear(memory_dim, cfg.attention_dim, bias=False)
        self.location_conv = nn.Conv1d(2, cfg.location_filters, cfg.location_kernel,
                                       padding=cfg.location_kernel // 2, bias=False)
        self.location = nn.Linear(cfg.location_filters, cfg.attention_dim, bias=False)
        self.v = nn.Linear(cfg.attention_dim, 1, bias=True)

    def preprocess(self, memory: Tensor) -> Tensor:
        """The memory projection, computed once per utterance."""
        return self.memory(memory)

    def init_state(self, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(previous weights, cumulative weights), both zero."""
        zeros = memory.new_zeros(memory.shape[0], memory.shape[1])
        return zeros, zeros.clone()

    def forward(self, query: Tensor, memory: Tensor, processed: Tensor, mask: Tensor,
                state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        prev, cumulative = state
        loc = self.location_conv(torch.stack([prev, cumulative], dim=1)).transpose(1, 2)
        energies = self.v(torch.tanh(self.query(query).unsqueeze(1) + processed + self.location(loc))).squeeze(-1)
        weights = torch.softmax(energies.masked_fill(~mask, NEG_INF), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights, (weights, cumulative + weights)


def beta_binomial_prior(length: int, alpha: float, beta: float) -> Tensor:
    """The pmf of BetaBinomial(length - 1, alpha, beta) over 0..length-1 (DCA's prior filter)."""
    n = length - 1
    k = torch.arange(length, dtype=torch.float64)
    log_pmf = (torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
               + torch.lgamma(k + alpha) + torch.lgamma(n - k + beta) - torch.lgamma(torch.tensor(n + alpha + beta))
               - torch.lgamma(torch.tensor(alpha)) - torch.lgamma(torch.tensor(beta))
               + torch.lgamma(torch.tensor(alpha + beta)))
    return torch.exp(log_pmf).float()


class DynamicConvolutionAttention(nn.Module):
    """Location-relative attention with static, dynamic and prior filters (see the module docstring)."""

    def __init__(self, query_dim: int, memory_dim: int, cfg: TacotronConfig) -> None:
        super().__init__()
        self.kernel = cfg.dca_kernel
        self.filters = cfg.dca_filters
        self.static_conv = nn.Conv1d(1, cfg.dca_filters, cfg.dca_kernel, padding=cfg.dca_kernel // 2, bias=False)
        self.static = nn.Linear(cfg.dca_filters, cfg.attention_dim, bias=True)
        self.dynamic_filters = nn.Sequential(nn.Linear(query_dim, cfg.attention_dim), nn.Tanh(),
                                             nn.Linear(cfg.attention_dim, cfg.dca_filters * cfg.dca_kernel, bias=False))
        self.dynamic = nn.Linear(cfg.dca_filters, cfg.attention_dim, bias=False)
        self.v = nn.Linear(cfg.attention_dim, 1, bias=False)
        prior = beta_binomial_prior(cfg.dca_prior_length, cfg.dca_prior_alpha, cfg.dca_prior_beta)
        # conv1d is a correlation: flip the pmf and pad on the left so that weight at j moves to j..j+L-1
        self.register_buffer("prior", prior.flip(0).view(1, 1, -1), persistent=False)
        self.prior_length = cfg.dca_prior_length

    def preprocess(self, memory: Tensor) -> Tensor:
        return memory.new_zeros(0)  # the memory does not enter the energies

    def init_state(self, memory: Tensor, mask: Tensor) -> tuple[Tensor]:
        """All weight on the first input symbol."""
        prev = memory.new_zeros(memory.shape[0], memory.shape[1])
        prev[:, 0] = 1.0
        return (prev,)

    def forward(self, query: Tensor, memory: Tensor, processed: Tensor, mask: Tensor,
                state: tuple[Tensor]) -> tuple[Tensor, Tensor, tuple[Tensor]]:
        (prev,) = state
        b, t = prev.shape
        static = self.static_conv(prev.unsqueeze(1)).transpose(1, 2)  # [B, T, F]
        filters = self.dynamic_filters(query).view(b * self.filters, 1, self.kernel)
        dynamic = nn.functional.conv1d(prev.unsqueeze(0), filters, padding=self.kernel // 2, groups=b)
        dynamic = dynamic.view(b, self.filters, t).transpose(1, 2)
        prior = nn.functional.conv1d(nn.functional.pad(prev.unsqueeze(1), (self.prior_length - 1, 0)),
                                     self.prior.to(prev.dtype)).squeeze(1)
        energies = self.v(torch.tanh(self.static(static) + self.dynamic(dynamic))).squeeze(-1)
        energies = energies + torch.log(prior.clamp_min(1e-6))
        weights = torch.softmax(energies.masked_fill(~mask, NEG_INF), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights, (weights,)


def build_attention(query_dim: int, memory_dim: int, cfg: TacotronConfig) -> nn.Module:
    if cfg.attention == "location":
        return LocationSensitiveAttention(query_dim, memory_dim, cfg)
    return DynamicConvolutionAttention(query_dim, memory_dim, cfg)


__all__ = ["DynamicConvolutionAttention", "LocationSensitiveAttention", "beta_binomial_prior", "build_attention",
           "NEG_INF"]
