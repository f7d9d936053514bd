"""Capacitron: Tacotron2 (Shen et al., 2018) with a variational prosody embedding.

Data flows top to bottom through this file:

1. :class:`TextEncoder`: symbol embeddings, a stack of 5-wide convolutions (batch norm, ReLU,
   dropout), a BiLSTM.
2. The decoder *memory*: the encoder outputs with the prosody embedding
   (:mod:`speechunits.tts.prosody`) and, for multi-speaker models, a speaker embedding
   appended to every position (Capacitron's conditioning).
3. :class:`Decoder`, one step per ``r`` mel frames: a prenet (dropout always on, also at
   inference: Tacotron2's source of variation and robustness) on the last frame of the
   previous step, an attention LSTM, the attention (:mod:`speechunits.tts.attention`), a
   decoder LSTM, then a linear projection to ``r`` frames and one stop-token logit.
4. :class:`Postnet`: a residual convolution stack that refines the whole mel.

Mels are normalised per bin (``(log_mel - mean) / std`` over the training set); the model
never sees raw log-mels. :meth:`Capacitron.forward` is teacher-forced training;
:meth:`Capacitron.infer` decodes until every utterance's stop token fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechunits.errors import ConfigError
from speechunits.tts.attention import build_attention
from speechunits.tts.config import TTSConfig
from speechunits.tts.prosody import LagrangeMultipliers, ProsodyOutput, VariationalProsody

STOP_THRESHOLD = 0.5


def lengths_mask(lengths: Tensor, size: int | None = None) -> Tensor:
    """``[B, size]`` True on valid positions."""
    size = int(lengths.max()) if size is None else size
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class TextEncoder(nn.Module):
    """Symbol ids ``[B, N]`` -> encodings ``[B, N, encoder_dim]``."""

    def __init__(self, cfg: TTSConfig) -> None:
        super().__init__()
        t = cfg.tacotron
        self.embedding = nn.Embedding(t.num_symbols, t.embed_dim, padding_idx=0)
        convs = []
        dim = t.embed_dim
        for _ in range(t.encoder_convs):
            convs += [nn.Conv1d(dim, t.embed_dim, t.encoder_kernel, padding=t.encoder_kernel // 2),
                      nn.BatchNorm1d(t.embed_dim), nn.ReLU(), nn.Dropout(t.dropout)]
            dim = t.embed_dim
        self.convs = nn.Sequential(*convs)
        self.lstm = nn.LSTM(t.embed_dim, t.encoder_dim // 2, batch_first=True, bidirectional=True)

    def forward(self, text: Tensor, lengths: Tensor) -> Tensor:
        mask = lengths_mask(lengths, text.shape[1]).unsqueeze(1)
        x = self.embedding(text).transpose(1, 2)
        for layer in self.convs:
            x = layer(x)
            if isinstance(layer, nn.Conv1d):
                x = x * mask
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=text.shape[1])
        return out


class Prenet(nn.Module):
    """Two ReLU layers with dropout that stays on at inference."""

    def __init__(self, in_dim: int, dim: int, p: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, dim), nn.Linear(dim, dim)])
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = nn.functional.dropout(torch.relu(layer(x)), self.p, training=True)
        return x


@dataclass
class DecoderState:
    att_h: Tensor
    att_c: Tensor
    dec_h: Tensor
    dec_c: Tensor
    context: Tensor
    attention: tuple[Tensor, ...]


class Decoder(nn.Module):
    """One step: previous frame -> (r frames, stop logit, attention weights)."""

    def __init__(self, cfg: TTSConfig, memory_dim: int) -> None:
        super().__init__()
        t = cfg.tacotron
        self.n_mels, self.r = cfg.mel.n_mels, t.reduction
        self.prenet = Prenet(self.n_mels, t.prenet_dim, t.prenet_dropout)
        self.attention_rnn = nn.LSTMCell(t.prenet_dim + memory_dim, t.attention_rnn_dim)
        self.attention = build_attention(t.attention_rnn_dim, memory_dim, t)
        self.decoder_rnn = nn.LSTMCell(t.attention_rnn_dim + memory_dim, t.decoder_dim)
        self.projection = nn.Linear(t.decoder_dim + memory_dim, self.n_mels * self.r)
        self.stop = nn.Linear(t.decoder_dim + memory_dim, 1)
        self.rnn_dropout = t.rnn_dropout

    def init_state(self, memory: Tensor, mask: Tensor) -> DecoderState:
        b = memory.shape[0]
        z = lambda n: memory.new_zeros(b, n)  # noqa: E731
        return DecoderState(z(self.attention_rnn.hidden_size), z(self.attention_rnn.hidden_size),
                            z(self.decoder_rnn.hidden_size), z(self.decoder_rnn.hidden_size),
                            z(memory.shape[-1]), self.attention.init_state(memory, mask))

    def step(self, frame: Tensor, memory: Tensor, processed: Tensor, mask: Tensor,
             s: DecoderState) -> tuple[Tensor, Tensor, Tensor, DecoderState]:
        x = self.prenet(frame)
        att_h, att_c = self.attention_rnn(torch.cat([x, s.context], -1), (s.att_h, s.att_c))
        att_h = nn.functional.dropout(att_h, self.rnn_dropout, self.training)
        context, weights, att_state = self.attention(att_h, memory, processed, mask, s.attention)
        dec_h, dec_c = self.decoder_rnn(torch.cat([att_h, context], -1), (s.dec_h, s.dec_c))
        dec_h = nn.functional.dropout(dec_h, self.rnn_dropout, self.training)
        out = torch.cat([dec_h, context], -1)
        frames = self.projection(out).view(-1, self.r, self.n_mels)
        return frames, self.stop(out).squeeze(-1), weights, DecoderState(att_h, att_c, dec_h, dec_c, context, att_state)


class Postnet(nn.Module):
    """Residual refinement of the whole mel ``[B, T, n_mels]``."""

    def __init__(self, cfg: TTSConfig) -> None:
        super().__init__()
        t, m = cfg.tacotron, cfg.mel.n_mels
        dims = [m] + [t.postnet_dim] * (t.postnet_convs - 1) + [m]
        layers: list[nn.Module] = []
        for i in range(t.postnet_convs):
            layers += [nn.Conv1d(dims[i], dims[i + 1], t.postnet_kernel, padding=t.postnet_kernel // 2),
                       nn.BatchNorm1d(dims[i + 1])]
            if i < t.postnet_convs - 1:
                layers.append(nn.Tanh())
            layers.append(nn.Dropout(t.dropout))
        self.net = nn.Sequential(*layers)

    def forward(self, mel: Tensor) -> Tensor:
        return mel + self.net(mel.transpose(1, 2)).transpose(1, 2)


@dataclass
class TacotronOutput:
    """Model outputs; ``mel_*`` are ``[B, T, n_mels]`` normalised, ``attention`` ``[B, steps, N]``."""

    mel_before: Tensor
    mel_after: Tensor
    stop_logits: Tensor  # [B, steps]
    attention: Tensor
    kl: Tensor | None = None  # [B, levels] nats
    prosody: Tensor | None = None  # the embedding used [B, D]
    steps: Tensor | None = None  # inference: decoder steps per utterance (until the stop token)
    stop_fired: Tensor | None = None  # inference: whether the stop token fired before max_steps


class Capacitron(nn.Module):
    """Text (+ reference mel, speaker) -> mel; see the module docstring."""

    def __init__(self, cfg: TTSConfig) -> None:
        super().__init__()
        if cfg.tacotron.num_symbols < 3:
            raise ConfigError(None, "tacotron.num_symbols is unset: build the model from a symbol table")
        self.cfg = cfg
        t, p = cfg.tacotron, cfg.prosody
        self.encoder = TextEncoder(cfg)
        self.speaker = nn.Embedding(t.num_speakers, t.speaker_dim) if t.num_speakers else None
        self.prosody = (VariationalProsody(p, cfg.mel.n_mels, t.encoder_dim, t.speaker_dim if t.num_speakers else 0)
                        if p.variational else None)
        memory_dim = t.encoder_dim + p.embedding_dim + (t.speaker_dim if t.num_speakers else 0)
        self.decoder = Decoder(cfg, memory_dim)
        self.postnet = Postnet(cfg)
        self.register_buffer("mel_mean", torch.zeros(cfg.mel.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.mel.n_mels))

    # ------------------------------------------------------------------ mel normalisation
    def normalize(self, log_mel: Tensor) -> Tensor:
        """``[..., n_mels]`` log-mel -> the model's normalised space."""
        return (log_mel - self.mel_mean) / self.mel_std

    def denormalize(self, mel: Tensor) -> Tensor:
        return mel * self.mel_std + self.mel_mean

    @property
    def silence(self) -> Tensor:
        """The normalised value of a silent frame ``[n_mels]`` (what references are padded with)."""
        return self.normalize(torch.full_like(self.mel_mean, math.log(self.cfg.mel.log_floor)))

    # ------------------------------------------------------------------ pieces
    def speaker_vector(self, speaker: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if self.speaker is None:
            return None
        if speaker is None:
            raise ConfigError(None, "this model has speakers: give a speaker for every utterance")
        return self.speaker(speaker.to(device))

    def memory(self, encoded: Tensor, prosody: Tensor | None, speaker: Tensor | None) -> Tensor:
        parts = [encoded]
        for vec in (prosody, speaker):
            if vec is not None:
                parts.append(vec.to(encoded.dtype).unsqueeze(1).expand(-1, encoded.shape[1], -1))
        return torch.cat(parts, dim=-1)

    def posterior(self, encoded: Tensor, text_lengths: Tensor, ref_mel: Tensor, ref_lengths: Tensor,
                  speaker_vec: Tensor | None, *, sample: bool, level: str = "z_p",
                  temperature: float = 1.0) -> ProsodyOutput:
        assert self.prosody is not None
        return self.prosody(ref_mel, ref_lengths, encoded, text_lengths, speaker_vec, sample=sample, level=level,
                            temperature=temperature)

    # ------------------------------------------------------------------ training
    def forward(self, text: Tensor, text_lengths: Tensor, mel: Tensor, mel_lengths: Tensor,
                speaker: Tensor | None = None) -> TacotronOutput:
        """Teacher-forced pass; ``mel`` ``[B, T, n_mels]`` normalised, ``T`` a multiple of ``r``,
        padded with :attr:`silence`. The target is its own reference (the posterior sees it)."""
        r = self.cfg.tacotron.reduction
        if mel.shape[1] % r:
            raise ValueError(f"mel length {mel.shape[1]} is not a multiple of the reduction factor {r}")
        encoded = self.encoder(text, text_lengths)
        spk = self.speaker_vector(speaker, text.shape[0], text.device)
        prosody = None
        if self.prosody is not None:
            prosody = self.posterior(encoded, text_lengths, mel, mel_lengths, spk, sample=True)
        memory = self.memory(encoded, None if prosody is None else prosody.embedding, spk)
        mask = lengths_mask(text_lengths, text.shape[1])
        processed = self.decoder.attention.preprocess(memory)
        state = self.decoder.init_state(memory, mask)
        go = mel.new_zeros(mel.shape[0], mel.shape[2])
        inputs = [go] + list(mel[:, r - 1::r].unbind(1))[:-1]
        frames, stops, weights = [], [], []
        for frame in inputs:
            out, stop, w, state = self.decoder.step(frame, memory, processed, mask, state)
            frames.append(out)
            stops.append(stop)
            weights.append(w)
        before = torch.cat(frames, dim=1)
        after = self.postnet(before)
        return TacotronOutput(before, after, torch.stack(stops, 1), torch.stack(weights, 1),
                              None if prosody is None else prosody.kl,
                              None if prosody is None else prosody.embedding)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, text: Tensor, text_lengths: Tensor, prosody: Tensor | None = None, speaker: Tensor | None = None,
              max_frames_per_symbol: float = 15.0, max_steps: int = 2000) -> TacotronOutput:
        """Free-running decoding of a batch. ``prosody``: the embedding to use (a posterior or a
        prior sample), required when the model is variational. Each utterance stops when its stop
        probability passes 0.5, or at ``max_frames_per_symbol`` frames per input symbol."""
        if self.prosody is not None and prosody is None:
            raise ConfigError(None, "a variational model needs a prosody embedding (a reference or a prior sample)")
        r = self.cfg.tacotron.reduction
        encoded = self.encoder(text, text_lengths)
        spk = self.speaker_vector(speaker, text.shape[0], text.device)
        memory = self.memory(encoded, prosody, spk)
        mask = lengths_mask(text_lengths, text.shape[1])
        processed = self.decoder.attention.preprocess(memory)
        state = self.decoder.init_state(memory, mask)
        b = text.shape[0]
        limit = torch.ceil(text_lengths.float() * max_frames_per_symbol / r).long().clamp(1, max_steps)
        frame = memory.new_zeros(b, self.cfg.mel.n_mels)
        steps = torch.zeros(b, dtype=torch.long, device=text.device)
        fired = torch.zeros(b, dtype=torch.bool, device=text.device)
        done = torch.zeros(b, dtype=torch.bool, device=text.device)
        frames, stops, weights = [], [], []
        for i in range(int(limit.max())):
            out, stop, w, state = self.decoder.step(frame, memory, processed, mask, state)
            frames.append(out)
            stops.append(stop)
            weights.append(w)
            steps = torch.where(done, steps, steps + 1)
            now = torch.sigmoid(stop) > STOP_THRESHOLD
            fired = fired | (now & ~done)
            done = done | now | (steps >= limit)
            if bool(done.all()):
                break
            frame = out[:, -1]
        before = torch.cat(frames, dim=1)
        after = self.postnet(before)
        return TacotronOutput(before, after, torch.stack(stops, 1), torch.stack(weights, 1), prosody=prosody,
                              steps=steps, stop_fired=fired)


def build_multipliers(cfg: TTSConfig, initial: float = 1.0) -> LagrangeMultipliers | None:
    """One Lagrange multiplier per latent level, each starting at ``initial`` (None for a plain Tacotron2)."""
    levels = len(cfg.prosody.capacities)
    return LagrangeMultipliers(levels, initial) if levels else None


__all__ = ["Capacitron", "Decoder", "Postnet", "Prenet", "STOP_THRESHOLD", "TacotronOutput", "TextEncoder",
           "build_multipliers", "lengths_mask"]
