"""Capacitron's losses.

**Reconstruction NLL** (what makes the capacity ``C`` mean nats). The likelihood of a
normalised mel under the model is a factorised Laplace with a fixed scale ``b`` centred on the
post-net output: ``-log p(x | z, text) = sum_{t, k} (|x_tk - y_tk| / b + log(2 b))``, summed
over the utterance's valid frames ``t`` and mel bins ``k``: **nats per utterance**, the unit
of the per-utterance KL. The batch value is the mean over utterances. The pre-post-net
output gets the same L1 as an auxiliary loss (Tacotron2 trains both); it is not part of the
likelihood, so it is reported separately and never enters the KL balance.

The whole objective ``NLL + beta (KL - C)`` is divided by the mean number of mel values per
utterance before it reaches the optimizer. Dividing both terms by the same positive number
leaves the Lagrangian balance (and the KL the multiplier enforces) unchanged and keeps the
gradient scale of the guided-attention and stop-token losses comparable across corpora.

**Guided attention** (Tachibana et al., 2018): attention far from the diagonal is penalised
with weight ``1 - exp(-(n/N - t/T)^2 / (2 g^2))``: the attention-weighted penalty summed over
symbols and averaged over valid decoder steps, so it lies in [0, 1) whatever the text length
(the mean over all (step, symbol) pairs, as first published, shrinks with longer texts). It
makes attention align in hundreds instead of thousands of steps.

**Stop token**: binary cross-entropy on the decoder step holding the last frame (positives
weighted by ``pos_weight``: one positive per utterance against dozens of negatives).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechunits.tts.tacotron import lengths_mask


def laplace_nll(pred: Tensor, target: Tensor, lengths: Tensor, scale: float) -> Tensor:
    """``[B]`` nats: the Laplace NLL of ``target`` around ``pred`` over each utterance's valid frames."""
    mask = lengths_mask(lengths, target.shape[1]).unsqueeze(-1).to(pred.dtype)
    per_value = (pred.float() - target.float()).abs() / scale + math.log(2.0 * scale)
    return (per_value * mask).sum(dim=(1, 2))


def guided_attention_loss(attention: Tensor, text_lengths: Tensor, step_lengths: Tensor, width: float = 0.2) -> Tensor:
    """Mean per decoder step of the attention mass far from the diagonal, ``attention`` ``[B, steps, N]``."""
    b, steps, n = attention.shape
    t = torch.arange(steps, device=attention.device, dtype=torch.float32)[None, :, None] / step_lengths[:, None, None]
    k = torch.arange(n, device=attention.device, dtype=torch.float32)[None, None, :] / text_lengths[:, None, None]
    weight = 1.0 - torch.exp(-((k - t) ** 2) / (2.0 * width ** 2))
    valid = (lengths_mask(step_lengths, steps)[:, :, None] & lengths_mask(text_lengths, n)[:, None, :]).float()
    return (attention.float() * weight * valid).sum() / step_lengths.sum().clamp_min(1).float()


def stop_targets(mel_lengths: Tensor, steps: int, reduction: int) -> Tensor:
    """``[B, steps]``: 1 from the decoder step holding each utterance's last frame on."""
    last = torch.div(mel_lengths - 1, reduction, rounding_mode="floor")
    return (torch.arange(steps, device=mel_lengths.device)[None, :] >= last[:, None]).float()


def stop_loss(logits: Tensor, mel_lengths: Tensor, reduction: int, pos_weight: float) -> Tensor:
    """BCE of the stop logits up to each utterance's last step (later steps are padding)."""
    steps = logits.shape[1]
    target = stop_targets(mel_lengths, steps, reduction)
    valid = lengths_mask(decoder_steps(mel_lengths, reduction), steps).float()
    weight = torch.tensor(pos_weight, device=logits.device)
    bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=weight, reduction="none")
    return (bce * valid).sum() / valid.sum().clamp_min(1.0)


def decoder_steps(mel_lengths: Tensor, reduction: int) -> Tensor:
    """Decoder steps that cover each utterance's frames."""
    return torch.div(mel_lengths + reduction - 1, reduction, rounding_mode="floor")


__all__ = ["decoder_steps", "guided_attention_loss", "laplace_nll", "stop_loss", "stop_targets"]
