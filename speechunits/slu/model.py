"""Encoder-decoder SLU model: any encoder of :mod:`speechunits.slu.encoders` + a pre-LN
Transformer decoder (``nn.TransformerDecoder``, ``norm_first=True``) over BPE targets
``<intent> _SEP <transcript>``, with greedy and beam-search decoding.

COCONUT setting: wav2vec2-base encoder, 6 decoder layers, d 768, 8 heads, FFN 3072.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechunits.slu.encoders import SinusoidalPositions, lengths_to_padding_mask
from speechunits.slu.tokenizer import BOS_ID, EOS_ID, PAD_ID


def masked_mean(x: Tensor, lengths: Tensor) -> Tensor:
    """Mean over the first ``lengths[b]`` steps of (B, T, D) ``x`` -> (B, D)."""
    keep = (~lengths_to_padding_mask(lengths, x.size(1))).to(x.dtype).unsqueeze(-1)
    return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)


@dataclass
class SLUOutput:
    logits: Tensor  # (B, L, V)
    memory: Tensor  # (B, T, d_model) encoder output after projection
    memory_lens: Tensor  # (B,)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)


class SLUModel(nn.Module):
    """Encoder + pre-LN Transformer decoder.

    ``encoder(inputs, lengths, **kw) -> (features, lengths)`` with ``encoder.output_dim``;
    features are projected to ``d_model`` when the sizes differ.
    """

    def __init__(
        self,
        encoder: nn.Module,
        vocab_size: int,
        d_model: int = 768,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 3072,
        dropout: float = 0.1,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        max_decode_len: int = 128,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        enc_dim = int(getattr(encoder, "output_dim"))
        self.enc_proj: nn.Module = nn.Identity() if enc_dim == d_model else nn.Linear(enc_dim, d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.pos = SinusoidalPositions(d_model, max_len=max(4096, max_decode_len + 2))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.out.weight = self.embed.weight
        self.d_model, self.vocab_size = d_model, vocab_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.max_decode_len = max_decode_len

    # --- encoder side ------------------------------------------------------------------
    def encode(self, audio: Tensor, audio_lens: Tensor, **encoder_kwargs: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder features projected to ``d_model`` and their lengths."""
        feats, lens = self.encoder(audio, audio_lens, **encoder_kwargs)
        return self.enc_proj(feats), lens

    def pooled_audio(self, audio: Tensor, audio_lens: Tensor, **encoder_kwargs: Tensor) -> Tensor:
        """Mean-pooled encoder output (B, d_model) over valid frames."""
        memory, lens = self.encode(audio, audio_lens, **encoder_kwargs)
        return masked_mean(memory, lens)

    def pooled_text(self, tokens: Tensor) -> Tensor:
        """Mean of the decoder's token embeddings over non-pad positions (B, d_model)."""
        emb = self.embed(tokens)
        keep = (tokens != self.pad_id).to(emb.dtype).unsqueeze(-1)
        return (emb * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    # --- decoder side ------------------------------------------------------------------
    def decode_logits(self, memory: Tensor, memory_lens: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits (B, L, V) for decoder inputs ``tokens`` (bos-first, pad-padded)."""
        length = tokens.size(1)
        x = self.dropout(self.pos(self.embed(tokens) * math.sqrt(self.d_model)))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        h = self.decoder(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tokens == self.pad_id,
            memory_key_padding_mask=lengths_to_padding_mask(memory_lens, memory.size(1)),
        )
        return self.out(h)

    def forward_all(self, audio: Tensor, audio_lens: Tensor, tokens: Tensor, **encoder_kwargs: Tensor) -> SLUOutput:
        memory, lens = self.encode(audio, audio_lens, **encoder_kwargs)
        return SLUOutput(self.decode_logits(memory, lens, tokens), memory, lens)

    def forward(self, audio: Tensor, audio_lens: Tensor, tokens: Tensor, **encoder_kwargs: Tensor) -> Tensor:
        """Logits (B, L, V) of the next token at every decoder input position."""
        return self.forward_all(audio, audio_lens, tokens, **encoder_kwargs).logits

    def loss(self, logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Token-level cross-entropy, mean over non-pad target positions."""
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=self.pad_id,
            label_smoothing=label_smoothing,
        )

    # --- inference -----------------------------------------------------------------------
    def _step_logprobs(self, memory: Tensor, memory_lens: Tensor, prefix: Tensor) -> Tensor:
        """Next-token log-probabilities (N, V); pad and bos can never be emitted."""
        logits = self.decode_logits(memory, memory_lens, prefix)[:, -1].float()
        logits[:, [self.pad_id, self.bos_id]] = float("-inf")
        return F.log_softmax(logits, dim=-1)

    def greedy_decode(
        self, audio: Tensor, audio_lens: Tensor, max_len: int | None = None, **encoder_kwargs: Tensor
    ) -> list[list[int]]:
        """Argmax decoding; each hypothesis ends before eos (or at ``max_len`` tokens)."""
        max_len = max_len or self.max_decode_len
        with _eval_mode(self):
            memory, lens = self.encode(audio, audio_lens, **encoder_kwargs)
            batch = memory.size(0)
            prefix = torch.full((batch, 1), self.bos_id, dtype=torch.long, device=memory.device)
            done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
            for _ in range(max_len):
                nxt = self._step_logprobs(memory, lens, prefix).argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                prefix = torch.cat([prefix, nxt[:, None]], dim=1)
                done |= nxt == self.eos_id
                if bool(done.all()):
                    break
        hyps = []
        for row in prefix[:, 1:].tolist():
            hyps.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return hyps

    def beam_search(
        self,
        audio: Tensor,
        audio_lens: Tensor,
        beam_size: int = 5,
        max_len: int | None = None,
        length_penalty: float = 1.0,
        **encoder_kwargs: Tensor,
    ) -> list[list[int]]:
        """Beam search per utterance; the best hypothesis by ``logprob / len**length_penalty``.

        A hypothesis finishes when eos is among the ``beam_size`` best candidates of a step
        (its length counts the eos). The search stops once ``beam_size`` hypotheses have finished, or after ``max_len`` steps, when
        the live ones are added unfinished. ``beam_size=1`` equals :meth:`greedy_decode`.
        """
        max_len = max_len or self.max_decode_len
        results: list[list[int]] = []
        with _eval_mode(self):
            memory, lens = self.encode(audio, audio_lens, **encoder_kwargs)
            for b in range(memory.size(0)):
                results.append(self._beam_one(memory[b : b + 1], lens[b : b + 1], beam_size, max_len, length_penalty))
        return results

    def _beam_one(self, memory: Tensor, lens: Tensor, beam: int, max_len: int, alpha: float) -> list[int]:
        device = memory.device
        prefixes = torch.full((1, 1), self.bos_id, dtype=torch.long, device=device)
        scores = torch.zeros(1, device=device)
        finished: list[tuple[float, list[int]]] = []

        def norm(score: float, length: int) -> float:
            return score / (max(length, 1) ** alpha)

        for _ in range(max_len):
            n = prefixes.size(0)
            logp = self._step_logprobs(memory.expand(n, -1, -1), lens.expand(n), prefixes)
            cand = (scores[:, None] + logp).reshape(-1)
            top_scores, top_idx = cand.topk(min(2 * beam, cand.numel()))
            keep_rows, keep_tok, keep_scores = [], [], []
            for rank, (s, idx) in enumerate(zip(top_scores.tolist(), top_idx.tolist())):
                row, tok = divmod(idx, self.vocab_size)
                if tok == self.eos_id:
                    if rank >= beam:  # an eos below the top `beam` candidates does not finish
                        continue
                    hyp = prefixes[row, 1:].tolist()
                    finished.append((norm(s, len(hyp) + 1), hyp))
                    if len(finished) >= beam:
                        break
                else:
                    keep_rows.append(row)
                    keep_tok.append(tok)
                    keep_scores.append(s)
                if len(keep_rows) == beam:
                    break
            if len(finished) >= beam or not keep_rows:
                break
            rows = torch.tensor(keep_rows, device=device)
            prefixes = torch.cat([prefixes[rows], torch.tensor(keep_tok, device=device)[:, None]], dim=1)
            scores = torch.tensor(keep_scores, device=device)
        else:
            for s, row in zip(scores.tolist(), prefixes[:, 1:].tolist()):
                finished.append((norm(s, len(row)), row))
        return max(finished, key=lambda item: item[0])[1]
