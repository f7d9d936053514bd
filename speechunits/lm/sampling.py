"""Continuations from a unit LM: temperature, top-k and nucleus (top-p) sampling, or greedy.

Every prompt is prefixed with BOS; the model draws among the ``V`` token ids and EOS (never
BOS: :func:`~speechunits.lm.model.next_token_logprobs`). With ``stop_at_eos`` a sequence ends
at its EOS (not returned); without it EOS is masked out and exactly ``max_new_tokens`` are
drawn. The filters are applied in the order temperature, top-k, top-p on one step's
distribution; ``temperature=0`` is greedy (argmax, no randomness). All randomness comes from
``generator`` so a seeded call is reproducible. Prompts are right padded in one batch and the
prefix is recomputed each step (no KV cache); the context is the last ``cfg.max_len`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from speechunits.lm.model import UnitLM, bos_id, eos_id, next_token_logprobs

__all__ = ["filter_logprobs", "sample"]


def filter_logprobs(logp: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """``logp`` (..., K) with everything outside the top-k and outside the nucleus set to -inf.

    The nucleus is the smallest set of most probable outcomes whose mass is >= ``top_p``
    (at least one outcome). The result is renormalised."""
    if top_k is not None and 0 < top_k < logp.shape[-1]:
        kth = torch.topk(logp, top_k, dim=-1).values[..., -1:]
        logp = logp.masked_fill(logp < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_lp, order = torch.sort(logp, dim=-1, descending=True)
        probs = torch.softmax(sorted_lp, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the strictly more probable outcomes
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logp = logp.masked_fill(drop, float("-inf"))
    return torch.log_softmax(logp, dim=-1)


@torch.no_grad()
def sample(model: UnitLM, prompts: Sequence[np.ndarray], max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           stop_at_eos: bool = True) -> list[np.ndarray]:
    """New tokens (int64, ids in ``0..V-1``) continuing each prompt; see the module docstring."""
    cfg = model.cfg
    vocab = cfg.vocab_size - 2
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    seqs = [[bos_id(cfg), *(int(t) for t in np.asarray(p).reshape(-1))] for p in prompts]
    for k, s in enumerate(seqs):
        if any(not 0 <= t < vocab for t in s[1:]):
            raise ValueError(f"prompt {k}: token ids must be in [0, {vocab})")
    new: list[list[int]] = [[] for _ in seqs]
    active = list(range(len(seqs)))
    try:
        for _ in range(int(max_new_tokens)):
            if not active:
                break
            ctx = [seqs[i][-cfg.max_len:] for i in active]
            width = max(len(c) for c in ctx)
            tokens = torch.full((len(ctx), width), eos_id(cfg), dtype=torch.long)
            for row, c in enumerate(ctx):
                tokens[row, :len(c)] = torch.tensor(c, dtype=torch.long)
            last = torch.tensor([len(c) - 1 for c in ctx], device=device)
            logits = model(tokens.to(device))[torch.arange(len(ctx), device=device), last]
            full = next_token_logprobs(logits)  # ids 0..V-1, BOS (masked), EOS
            logp = torch.cat((full[:, :vocab], full[:, vocab + 1:]), dim=-1) if stop_at_eos else full[:, :vocab]
            if temperature == 0:
                picked = logp.argmax(-1)
            else:
                logp = filter_logprobs(torch.log_softmax(logp / float(temperature), dim=-1), top_k, top_p)
                picked = torch.multinomial(logp.exp().cpu(), 1, generator=generator)[:, 0]
            still = []
            for i, t in zip(active, picked.tolist()):
                if t == vocab:  # EOS (candidate index V)
                    continue
                seqs[i].append(t)
                new[i].append(t)
                still.append(i)
            active = still
    finally:
        model.train(was_training)
    return [np.asarray(n, dtype=np.int64) for n in new]
