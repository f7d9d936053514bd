"""Encoders of the SLU model. Every encoder maps ``(inputs, lengths) -> (features, out_lengths)``
with ``features`` of shape (B, T, ``output_dim``) and exposes ``output_dim``.

* :class:`MelConformerEncoder` — log-mel (torchaudio ``MelSpectrogram``), 4x conv
  subsampling, ``torchaudio.models.Conformer``; trained from scratch.
* :class:`Wav2Vec2Encoder` — a wav2vec2 / HuBERT-shaped model (the Sylber encoder class,
  torchaudio ``Wav2Vec2Model`` keys), optionally initialised from a local checkpoint through
  :func:`speechunits.encoders.checkpoints.load_encoder`, with an option to freeze the CNN
  front end (COCONUT freezes it).
* :class:`UnitEncoder` — embeddings of discrete unit ids (a ``speechunits.units`` unit
  set), with optional per-token log-duration and continuous embedding inputs, followed by
  a Transformer encoder. :func:`unit_batch` builds its inputs from ``UnitRecord``-like
  objects (fields ``units``, ``starts``, ``ends``).

:class:`UnitSetEncoder` is the ``UnitEncoder`` the class-incremental protocol builds for
``model.encoder.type: units``: one (B, T, 2) ``[id, duration]`` input tensor.

:data:`ENCODERS` names the encoder types of experiment configs (``model.encoder.type``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from speechunits.errors import ConfigError, UnitFormatError
from speechunits.encoders.checkpoints import load_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder

PathLike = str | os.PathLike[str]


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True at padded positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position encodings added to (B, T, D) inputs."""

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.size(1) > self.pe.size(0):
            raise ValueError(f"sequence of {x.size(1)} steps exceeds the {self.pe.size(0)} positions")
        return x + self.pe[: x.size(1)].to(x.dtype)


# --- (a) log-mel + conformer --------------------------------------------------------
class MelConformerEncoder(nn.Module):
    """Log-mel features, two stride-2 conv layers (4x subsampling), a Conformer."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        kernel_size: int = 31,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.hop = sample_rate // 100  # 10 ms
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=sample_rate // 40, hop_length=self.hop, n_mels=n_mels
        )
        self.subsample = nn.Sequential(
            nn.Conv2d(1, d_model, 3, stride=2), nn.ReLU(), nn.Conv2d(d_model, d_model, 3, stride=2), nn.ReLU()
        )
        freq = ((n_mels - 1) // 2 - 1) // 2
        self.proj = nn.Linear(d_model * freq, d_model)
        self.pos = SinusoidalPositions(d_model)
        self.dropout = nn.Dropout(dropout)
        self.conformer = torchaudio.models.Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=kernel_size,
            dropout=dropout,
        )
        self.output_dim = d_model
        self._pad_mask: Tensor | None = None
        for layer in self.conformer.conformer_layers:
            layer.conv_module.sequential[2].register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Zero padded frames before each depthwise convolution (torchaudio's Conformer does
        not), so valid frames do not depend on how much batch padding follows them."""
        if self._pad_mask is None:
            return inputs
        x = inputs[0]  # (B, C, T)
        return (x.masked_fill(self._pad_mask[:, None, : x.size(-1)], 0.0),) + inputs[1:]

    def forward(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        feats = torch.log(self.mel(audio) + 1e-6).transpose(1, 2)  # (B, frames, n_mels)
        frames = lengths // self.hop + 1
        x = self.subsample(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        out_lens = ((frames - 1) // 2 - 1) // 2
        out_lens = out_lens.clamp(min=1, max=t)
        x = x[:, : int(out_lens.max())]  # batch-level padding beyond the longest input
        x = self.dropout(self.pos(x))
        self._pad_mask = lengths_to_padding_mask(out_lens, x.size(1))
        try:
            x, out_lens = self.conformer(x, out_lens)
        finally:
            self._pad_mask = None
        return x, out_lens


# --- (b) wav2vec2 / HuBERT ----------------------------------------------------------
WAV2VEC2_BASE: dict[str, Any] = {"num_layers": 12}
"""wav2vec2-base / HuBERT-base: :class:`~speechunits.encoders.model.EncoderConfig` fields over its
defaults (same conv front end, post-LN 768-d transformer; 12 layers instead of Sylber's 9)."""


def _sylber_config(config: Mapping[str, Any] | EncoderConfig) -> EncoderConfig:
    if isinstance(config, EncoderConfig):
        return config
    try:
        return EncoderConfig.from_dict({**WAV2VEC2_BASE, **dict(config)})
    except (TypeError, ValueError) as err:
        raise ConfigError(None, f"invalid wav2vec2 encoder config {dict(config)} ({err})") from err


class Wav2Vec2Encoder(nn.Module):
    """A wav2vec2/HuBERT-shaped encoder (:class:`~speechunits.encoders.model.SpeechEncoder`, the
    torchaudio ``Wav2Vec2Model`` layout) as SLU encoder: last transformer layer output, 50 Hz.

    Args:
        config: ``EncoderConfig`` fields over :data:`WAV2VEC2_BASE` (or a ``EncoderConfig``).
            With a ``checkpoint`` and no ``config``, the architecture comes from the file.
        checkpoint: optional local checkpoint (fairseq ``.pt``, Hugging Face directory,
            torchaudio state dict, Lightning ``.ckpt``), read by
            :func:`speechunits.encoders.checkpoints.load_encoder`: explicit key maps, every
            key checked (a missing, unknown or mis-shaped key is a CheckpointError).
        freeze_feature_extractor: freeze the CNN front end (no gradients, eval mode).
        num_layers: keep only the first ``num_layers`` transformer layers.
        normalize_waveform: override the per-utterance input normalisation.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | EncoderConfig | None = None,
        checkpoint: PathLike | None = None,
        freeze_feature_extractor: bool = True,
        num_layers: int | None = None,
        normalize_waveform: bool | None = None,
    ) -> None:
        super().__init__()
        if checkpoint is not None:
            cfg = None if config is None else _sylber_config(config)
            self.model = load_encoder(checkpoint, config=cfg, num_layers=num_layers, normalize_waveform=normalize_waveform)
            self.model.train()
        else:
            cfg = _sylber_config(config or {})
            if num_layers is not None:
                cfg = replace(cfg, num_layers=int(num_layers))
            if normalize_waveform is not None:
                cfg = replace(cfg, normalize_waveform=bool(normalize_waveform))
            self.model = SpeechEncoder(cfg)
        self.freeze_feature_extractor = freeze_feature_extractor
        if freeze_feature_extractor:
            self.model.feature_extractor.requires_grad_(False)
        self.output_dim = int(self.model.embed_dim)

    def train(self, mode: bool = True) -> Wav2Vec2Encoder:
        super().train(mode)
        if self.freeze_feature_extractor:
            self.model.feature_extractor.eval()
        return self

    def forward(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        # With a frozen front end neither its inputs nor its weights need gradients, so
        # autograd records nothing there.
        return self.model(audio, lengths)


# --- (c) unit tokens ----------------------------------------------------------------
class UnitEncoder(nn.Module):
    """Unit-id embeddings (+ optional log-duration and continuous embeddings) + Transformer.

    ``forward(units, lengths, durations=None, embeddings=None)``: ``units`` (B, T) long
    (``pad_id`` at padding), ``durations`` (B, T) frames, ``embeddings`` (B, T, E).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        pad_id: int | None = None,
        use_durations: bool = False,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.pad_id = vocab_size if pad_id is None else pad_id
        self.embed = nn.Embedding(max(vocab_size, self.pad_id + 1), d_model, padding_idx=self.pad_id)
        self.duration_proj = nn.Linear(1, d_model) if use_durations else None
        self.embedding_proj = nn.Linear(embedding_dim, d_model) if embedding_dim else None
        self.pos = SinusoidalPositions(d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.output_dim = d_model

    def forward(
        self, units: Tensor, lengths: Tensor, durations: Tensor | None = None, embeddings: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        x = self.embed(units) * math.sqrt(self.output_dim)
        if self.duration_proj is not None:
            if durations is None:
                raise ValueError("this UnitEncoder was built with use_durations=True: pass durations")
            x = x + self.duration_proj(torch.log1p(durations.float()).unsqueeze(-1))
        if self.embedding_proj is not None:
            if embeddings is None:
                raise ValueError("this UnitEncoder was built with embedding_dim: pass embeddings")
            x = x + self.embedding_proj(embeddings.float())
        mask = lengths_to_padding_mask(lengths, units.size(1))
        x = self.encoder(self.pos(x), src_key_padding_mask=mask)
        return x, lengths


def unit_batch(records: Sequence[Any], pad_id: int) -> dict[str, Tensor]:
    """``UnitRecord``-like objects (``units``, ``starts``, ``ends``) -> padded ``units``,
    ``lengths`` and ``durations`` (``ends - starts`` in frames) tensors."""
    if not records:
        raise ValueError("unit_batch needs at least one record")
    seqs, durs = [], []
    for rec in records:
        units = getattr(rec, "units", None)
        rid = getattr(rec, "id", "?")
        if units is None:
            raise UnitFormatError(None, f"utterance {rid!r} has no quantized 'units' (run the quantizer first)")
        starts, ends = list(rec.starts), list(rec.ends)
        if not (len(units) == len(starts) == len(ends)):
            raise UnitFormatError(None, f"utterance {rid!r}: {len(units)} units but {len(starts)} starts / {len(ends)} ends")
        seqs.append(torch.as_tensor(list(units), dtype=torch.long))
        durs.append(torch.as_tensor(ends, dtype=torch.long) - torch.as_tensor(starts, dtype=torch.long))
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    max_len = max(1, int(lengths.max()))
    units_t = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    dur_t = torch.zeros((len(seqs), max_len), dtype=torch.long)
    for i, (s, d) in enumerate(zip(seqs, durs)):
        units_t[i, : len(s)] = s
        dur_t[i, : len(d)] = d
    return {"units": units_t, "lengths": lengths, "durations": dur_t}


class UnitSetEncoder(UnitEncoder):
    """:class:`UnitEncoder` over the packed inputs of a unit-set source
    (:class:`speechunits.slu.inputs.UnitSetSource`): ``inputs`` (B, T, 2) long
    ``[unit id, duration in frames]``, so the SLU model calls it as ``encoder(inputs, lengths)``
    like an audio encoder. ``vocab_size``/``pad_id`` come from the unit set, not the config."""

    def __init__(self, vocab_size: int, use_durations: bool = True, **kwargs: Any) -> None:
        if kwargs.get("embedding_dim"):
            raise ConfigError(None, "the units encoder of slu-cil reads unit ids (and durations), not embeddings: drop embedding_dim")
        super().__init__(vocab_size, use_durations=use_durations, **kwargs)

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        if inputs.dim() != 3 or inputs.size(-1) != 2:
            raise ValueError(f"units encoder expects (B, T, 2) [id, duration] inputs, got shape {tuple(inputs.shape)}")
        return super().forward(inputs[..., 0], lengths, durations=inputs[..., 1])


ENCODERS: dict[str, type[nn.Module]] = {"mel_conformer": MelConformerEncoder, "wav2vec2": Wav2Vec2Encoder,
                                        "units": UnitSetEncoder}
"""The encoder types an experiment config names (``model.encoder.type``): the audio encoders, and
``units`` (unit sets read by :class:`speechunits.slu.inputs.UnitSetSource` from
``model.encoder.units_dir``)."""
