"""COCONUT losses: NSPT (negative-student positive-teacher supervised contrastive), the
multimodal (MM) audio-text supervised InfoNCE, MLP projection heads, and the
sequence-level KD helper (teacher beam-search hypotheses as targets).

All contrastive losses L2-normalise their inputs and use dot products divided by a
temperature. Formulas are in the docstrings and docs/slu.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechunits.slu.data import decoder_io
from speechunits.slu.tokenizer import PAD_ID


class ProjectionHead(nn.Module):
    """MLP ``Linear -> ReLU -> Linear`` mapping pooled features to the contrastive space."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _normalize(x: Tensor) -> Tensor:
    """L2-normalise rows in at least float32 (half inputs are promoted, float64 kept)."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


def _zero(like: Tensor) -> Tensor:
    """A zero that keeps the graph (so ``backward`` works when a loss has no terms)."""
    return like.sum() * 0.0


def nspt_loss(
    student: Tensor,
    labels: Tensor,
    anchor_mask: Tensor,
    teacher: Tensor,
    teacher_labels: Tensor,
    temperature: float = 0.1,
) -> Tensor:
    """Negative-student positive-teacher supervised contrastive loss.

    ``student`` (B, D): student projections of the whole batch, ``labels`` (B,) classes.
    ``anchor_mask`` (B,) bool: the rehearsal samples, which are the anchors.
    ``teacher`` (R, D) and ``teacher_labels`` (R,): the frozen previous-task model's
    projections of the rehearsal samples (the positives).

    With ``s`` = normalised student, ``t`` = normalised teacher, anchors ``i`` and
    ``P(i) = {p : teacher_labels[p] == labels[i]}``::

        L = mean_i  -1/|P(i)| sum_{p in P(i)} log( exp(s_i.t_p / T) / sum_{a != i} exp(s_i.s_a / T) )

    i.e. positives come from the teacher, the denominator (negatives) from the student
    embeddings of every other sample of the batch. Anchors without a positive are skipped;
    with no anchor the loss is 0.
    """
    s = _normalize(student)
    t = _normalize(teacher).to(s.dtype)
    anchors = torch.nonzero(anchor_mask, as_tuple=False).flatten()
    if anchors.numel() == 0 or t.size(0) == 0:
        return _zero(student)
    sa = s[anchors]  # (N, D)
    pos_mask = labels[anchors][:, None] == teacher_labels[None, :]  # (N, R)
    has_pos = pos_mask.any(dim=1)
    if not bool(has_pos.any()):
        return _zero(student)
    student_logits = sa @ s.T / temperature  # (N, B)
    self_mask = torch.zeros_like(student_logits, dtype=torch.bool)
    self_mask[torch.arange(anchors.numel(), device=s.device), anchors] = True
    log_denom = torch.logsumexp(student_logits.masked_fill(self_mask, float("-inf")), dim=1)  # (N,)
    pos_logits = sa @ t.T / temperature  # (N, R)
    log_prob = pos_logits - log_denom[:, None]
    per_anchor = -(log_prob * pos_mask).sum(1) / pos_mask.sum(1).clamp(min=1)
    return per_anchor[has_pos].mean()


def _supervised_infonce(anchor: Tensor, other: Tensor, pos_mask: Tensor, temperature: float) -> Tensor:
    """mean_i -1/|P(i)| sum_{p in P(i)} log softmax_j(anchor_i.other_j / T)[p] over anchors with positives."""
    logits = anchor @ other.T / temperature
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has_pos = pos_mask.any(dim=1)
    per_anchor = -(log_prob * pos_mask).sum(1) / pos_mask.sum(1).clamp(min=1)
    return per_anchor[has_pos].mean()


def multimodal_loss(
    audio: Tensor,
    text: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    mask: Tensor | None = None,
    symmetric: bool = True,
) -> Tensor:
    """Supervised audio-text InfoNCE (MM loss).

    ``audio``/``text`` (B, D): projections of the pooled encoder output and of the pooled
    decoder token embeddings of the same utterances; positives share the label (intent).
    Audio-to-text direction, with ``a``, ``x`` normalised::

        L_a2t = mean_i -1/|P(i)| sum_{p: y_p = y_i} log( exp(a_i.x_p / T) / sum_j exp(a_i.x_j / T) )

    ``symmetric`` averages it with the text-to-audio direction. ``mask`` (B,) bool keeps
    only some samples (e.g. the current task's data); an empty selection gives 0, still
    connected to both inputs: under DDP a rank whose rows are all rehearsal samples must give
    the text head a (zero) gradient too, or the other ranks wait for it forever.
    """
    if mask is not None:
        audio, text, labels = audio[mask], text[mask], labels[mask]
    if audio.size(0) == 0:
        return _zero(audio) + _zero(text)
    a = _normalize(audio)
    x = _normalize(text)
    pos = labels[:, None] == labels[None, :]
    loss = _supervised_infonce(a, x, pos, temperature)
    if symmetric:
        loss = 0.5 * (loss + _supervised_infonce(x, a, pos.T, temperature))
    return loss


def seq_kd_targets(
    teacher_hyps: Sequence[Sequence[int]], pad_id: int = PAD_ID
) -> tuple[Tensor, Tensor]:
    """Teacher beam-search hypotheses (ids without bos/eos) -> decoder (input, output) tensors.

    Sequence-level KD trains the student with cross-entropy on these instead of (or in
    addition to) the gold targets of the rehearsal utterances.
    """
    if not teacher_hyps:
        raise ValueError("seq_kd_targets needs at least one hypothesis")
    return decoder_io([list(h) for h in teacher_hyps], pad_id=pad_id)


def combine_losses(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_k weights.get(k, 1) * terms[k]`` (COCONUT: CE + w_nspt NSPT + w_mm MM [+ w_kd KD])."""
    total = None
    for name, value in terms.items():
        w = float(weights.get(name, 1.0))
        total = value * w if total is None else total + value * w
    if total is None:
        raise ValueError("combine_losses needs at least one term")
    return total
