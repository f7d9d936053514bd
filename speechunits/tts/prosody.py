"""Capacitron's variational prosody (Battenberg et al., 2019), and a hierarchical extension.

**Reference encoder.** Six 3x3 stride-2 convolutions (32-32-64-64-128-128 channels), each
with batch norm and ReLU, over the normalised log-mel ``[B, T, n_mels]``, then a GRU whose
final state (at each utterance's own last valid frame) summarises the reference. Padding is
the normalised *silence* value (what the data loader pads with), and every layer is masked by
the valid length: padded frames are zeroed before each convolution and left out of the batch
statistics (:class:`MaskedBatchNorm2d`), so a reference encodes the same in any batch.

**Posteriors.** A diagonal Normal ``q(z | ...)`` whose inputs depend on ``kind``: ``V`` the
reference summary, ``VT`` plus a text summary (a GRU over the text encoder's outputs),
``VTS`` plus the speaker embedding. The prior is N(0, I). Distributions are built from the
network's tensors, so they live on the model's device; standard deviations are
``softplus(.) + min_scale`` (never ``exp`` of an unbounded log-variance, the source of NaN
posteriors), and the KL is the closed form, summed over dimensions: nats per utterance.

**Hierarchical latents** (``kind: hierarchical``): ``z_s ~ q(z_s | x, text[, speaker])`` with
prior N(0, I) and ``z_p ~ q(z_p | x, z_s, text[, speaker])`` with a learned conditional prior
``p(z_p | z_s)``. Each level has its own capacity (``C_s``, ``C_p``) and Lagrange multiplier.
``KL_p`` is the single-sample estimate of ``E_q(z_s)[KL(q(z_p|x,z_s) || p(z_p|z_s))]`` (closed
form given the sampled ``z_s``). Transfer can go through ``z_s`` (``z_p`` drawn from the
conditional prior: the coarse style of the reference, new details) or through ``z_p`` (both
from the reference).

**Capacity.** :class:`LagrangeMultipliers` holds ``beta = softplus(beta_raw)`` per level. The
model minimises ``NLL + beta * (KL - C)`` with ``beta`` held fixed; the multipliers maximise
it, i.e. minimise ``-beta * (KL - C)`` with ``KL`` held fixed, on their own SGD optimizer:
``beta`` rises while ``KL > C`` and falls towards 0 while ``KL < C``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from speechunits.errors import ConfigError
from speechunits.tts.config import ProsodyConfig


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over ``[B, C, T, F]`` whose training statistics cover valid time steps only."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            return super().forward(x)
        m = mask[:, None, :, None].to(x.dtype)  # [B, 1, T, 1]
        count = (m.sum() * x.shape[-1]).clamp_min(1.0)
        mean = (x * m).sum(dim=(0, 2, 3)) / count
        var = (((x - mean[None, :, None, None]) ** 2) * m).sum(dim=(0, 2, 3)) / count
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum or 0.1)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum or 0.1)
            self.num_batches_tracked += 1
        y = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return (y * self.weight[None, :, None, None] + self.bias[None, :, None, None]) * m


def _downsampled(lengths: Tensor) -> Tensor:
    """Valid length after a stride-2, kernel-3, padding-1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


def _time_mask(lengths: Tensor, size: int) -> Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class ReferenceEncoder(nn.Module):
    """Normalised log-mel ``[B, T, n_mels]`` + lengths -> summary ``[B, ref_rnn_dim]``."""

    def __init__(self, n_mels: int, channels: list[int], rnn_dim: int) -> None:
        super().__init__()
        ins = [1, *channels[:-1]]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False) for i, o in zip(ins, channels))
        self.norms = nn.ModuleList(MaskedBatchNorm2d(o) for o in channels)
        freq = n_mels
        for _ in channels:
            freq = (freq - 1) // 2 + 1
        self.gru = nn.GRU(channels[-1] * freq, rnn_dim, batch_first=True)

    def forward(self, mel: Tensor, lengths: Tensor) -> Tensor:
        x = mel.unsqueeze(1)  # [B, 1, T, n_mels]
        for conv, norm in zip(self.convs, self.norms):
            x = x * _time_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
            x = conv(x)
            lengths = _downsampled(lengths)
            x = torch.relu(norm(x, _time_mask(lengths, x.shape[2])))
        b, c, t, f = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[-1]


class TextSummary(nn.Module):
    """A GRU over the text encoder's outputs: the final state summarises the sentence."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, dim, batch_first=True)

    def forward(self, encoded: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(encoded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[-1]


class GaussianHead(nn.Module):
    """Conditioning vector -> diagonal Normal (``softplus`` scale with a floor)."""

    def __init__(self, in_dim: int, hidden: int, latent: int, min_scale: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.min_scale = min_scale

    def forward(self, h: Tensor) -> Normal:
        mu, raw = self.net(h.float()).chunk(2, dim=-1)
        return Normal(mu, nn.functional.softplus(raw) + self.min_scale)


def standard_normal(like: Tensor) -> Normal:
    """N(0, I) with the shape, dtype and device of ``like``."""
    return Normal(torch.zeros_like(like), torch.ones_like(like))


def kl_to_standard_normal(q: Normal) -> Tensor:
    """``KL(q || N(0, I))`` summed over dimensions: nats per utterance ``[B]``."""
    return kl_divergence(q, standard_normal(q.loc)).sum(-1)


@dataclass
class ProsodyOutput:
    """What the prosody module gives the decoder and the loss."""

    embedding: Tensor  # [B, embedding_dim]
    kl: Tensor  # [B, levels]: nats per utterance and latent level
    posterior_mean: Tensor | None = None


class VariationalProsody(nn.Module):
    """Reference encoder + posterior(s) + prior(s); see the module docstring."""

    def __init__(self, cfg: ProsodyConfig, n_mels: int, text_dim: int, speaker_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.reference = ReferenceEncoder(n_mels, list(cfg.ref_channels), cfg.ref_rnn_dim)
        self.text = TextSummary(text_dim, cfg.text_summary_dim) if cfg.uses_text else None
        self.speaker_dim = speaker_dim if cfg.kind in ("VTS", "hierarchical") else 0
        cond = cfg.ref_rnn_dim + (cfg.text_summary_dim if self.text is not None else 0) + self.speaker_dim
        z = cfg.latent_dim
        self.posterior = GaussianHead(cond, cfg.posterior_hidden, z, cfg.min_scale)
        if cfg.hierarchical:
            self.posterior_p = GaussianHead(cond + z, cfg.posterior_hidden, z, cfg.min_scale)
            self.prior_p = GaussianHead(z, cfg.posterior_hidden, z, cfg.min_scale)

    def _conditioning(self, ref_mel: Tensor, ref_lengths: Tensor, text_encoded: Tensor | None,
                      text_lengths: Tensor | None, speaker: Tensor | None) -> Tensor:
        parts = [self.reference(ref_mel, ref_lengths)]
        if self.text is not None:
            if text_encoded is None or text_lengths is None:
                raise ConfigError(None, f"this model's posterior (prosody kind {self.cfg.kind}) is conditioned on the "
                                        "reference's text: give the reference's transcript")
            parts.append(self.text(text_encoded, text_lengths))
        if self.speaker_dim:
            if speaker is None:
                parts.append(ref_mel.new_zeros(ref_mel.shape[0], self.speaker_dim))
            else:
                parts.append(speaker)
        return torch.cat([p.float() for p in parts], dim=-1)

    def forward(self, ref_mel: Tensor, ref_lengths: Tensor, text_encoded: Tensor | None = None,
                text_lengths: Tensor | None = None, speaker: Tensor | None = None, *, sample: bool = True,
                level: str = "z_p", temperature: float = 1.0) -> ProsodyOutput:
        """Posterior embedding of a reference (training: a reparameterised sample; ``sample=False``:
        the posterior mean). Hierarchical ``level="z_s"`` keeps only ``z_s`` from the reference and
        draws ``z_p`` from ``p(z_p | z_s)`` at ``temperature``."""
        h = self._conditioning(ref_mel, ref_lengths, text_encoded, text_lengths, speaker)
        q = self.posterior(h)
        z = q.rsample() if sample else q.loc
        kl = kl_to_standard_normal(q)
        if not self.cfg.hierarchical:
            return ProsodyOutput(z, kl[:, None], q.loc)
        q_p = self.posterior_p(torch.cat([h, z], dim=-1))
        p_p = self.prior_p(z)
        kl_p = kl_divergence(q_p, p_p).sum(-1)
        if level == "z_s":
            z_p = p_p.loc + temperature * p_p.scale * torch.randn_like(p_p.loc)
        elif level == "z_p":
            z_p = q_p.rsample() if sample else q_p.loc
        else:
            raise ConfigError(None, f"transfer level {level!r}: expected z_s or z_p")
        return ProsodyOutput(torch.cat([z, z_p], dim=-1), torch.stack([kl, kl_p], dim=-1),
                             torch.cat([q.loc, q_p.loc], dim=-1))

    def sample_prior(self, batch: int, temperature: float, device: torch.device,
                     generator: torch.Generator | None = None) -> Tensor:
        """A prior sample at ``temperature`` (0: the prior mean) ``[B, embedding_dim]``."""
        z_dim = self.cfg.latent_dim
        noise = torch.randn(batch, z_dim, generator=generator, device="cpu").to(device)
        z = temperature * noise
        if not self.cfg.hierarchical:
            return z
        p_p = self.prior_p(z)
        noise_p = torch.randn(batch, z_dim, generator=generator, device="cpu").to(device)
        return torch.cat([z, p_p.loc + temperature * p_p.scale * noise_p], dim=-1)


def softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LagrangeMultipliers(nn.Module):
    """``beta = softplus(beta_raw)``, one per latent level, trained by gradient *ascent*.

    ``forward(kl, capacities)`` returns ``-sum(beta * (mean KL - C))``: minimising it with SGD
    raises ``beta`` while the batch's mean KL exceeds ``C`` and lowers it otherwise. It runs
    as a module call so that DDP averages the multipliers' gradients over ranks.
    """

    def __init__(self, levels: int, initial: float = 1.0) -> None:
        super().__init__()
        self.beta_raw = nn.Parameter(torch.full((levels,), softplus_inverse(initial)))

    def beta(self) -> Tensor:
        return nn.functional.softplus(self.beta_raw)

    def forward(self, mean_kl: Tensor, capacities: Tensor) -> Tensor:
        return -(self.beta() * (mean_kl.detach().to(self.beta_raw.dtype) - capacities)).sum()


__all__ = ["GaussianHead", "LagrangeMultipliers", "MaskedBatchNorm2d", "ProsodyOutput", "ReferenceEncoder",
           "TextSummary", "VariationalProsody", "kl_to_standard_normal", "softplus_inverse", "standard_normal"]
