"""A HuBERT/wav2vec2-shaped speech encoder: a conv front end plus a (truncated) transformer, at 50 Hz.

It is the backbone of Sylber, of frame units (HuBERT k-means) and of the wav2vec2 SLU encoder.

Built from torchaudio's wav2vec2 components (``torchaudio.models.wav2vec2_model``), so the
state-dict keys of :class:`SpeechEncoder` are exactly those of torchaudio's ``Wav2Vec2Model``
(``feature_extractor.conv_layers.0.conv.weight``, ``encoder.transformer.layers.3.attention.q_proj.weight``
...). :mod:`speechunits.encoders.checkpoints` maps fairseq / Hugging Face / Lightning names onto them.

Padding: the forward pass takes per-utterance ``lengths`` and is *padding-invariant*: the
group norm of the first conv layer (per-channel statistics over time in HuBERT base) is
computed over each utterance's valid frames only, padded frames are zeroed before the
positional convolution and masked out of attention, so an utterance gives the same features
alone and inside a padded batch (up to float rounding). (The reference implementation and
Hugging Face's HubertModel let the padding leak into that group norm.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from speechunits.features.frame_features import frame_grid

HUBERT_BASE_CONV = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


@dataclass
class EncoderConfig:
    """Architecture of the encoder. Defaults: HuBERT base truncated to 9 layers (Sylber's backbone)."""

    extractor_conv_layer_config: list[tuple[int, int, int]] = field(default_factory=lambda: list(HUBERT_BASE_CONV))
    extractor_mode: str = "group_norm"  # "group_norm" (HuBERT base) or "layer_norm"
    extractor_conv_bias: bool = False
    encoder_embed_dim: int = 768
    num_layers: int = 9
    num_heads: int = 12
    ffn_dim: int = 3072
    layer_norm_first: bool = False
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    projection_dropout: float = 0.1
    attention_dropout: float = 0.1
    ffn_dropout: float = 0.0
    dropout: float = 0.1
    layer_drop: float = 0.05
    normalize_waveform: bool = False  # per-utterance zero mean / unit variance of the input
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.extractor_conv_layer_config = [tuple(int(v) for v in layer) for layer in self.extractor_conv_layer_config]
        if self.extractor_mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'group_norm' or 'layer_norm', got {self.extractor_mode!r}")
        if self.encoder_embed_dim % self.num_heads:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")

    @classmethod
    def tiny(cls, **overrides: Any) -> EncoderConfig:
        """A few-thousand-parameter model with the same structure, for tests."""
        base: dict[str, Any] = dict(
            extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
            encoder_embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_spec(cls, spec: Any) -> EncoderConfig:
        """A config from a training config's ``model`` entry: ``"base"``, ``"tiny"`` or a mapping
        ``{preset: base|tiny, <field>: value, ...}`` overriding fields of the preset."""
        if spec == "base":
            return cls()
        if spec == "tiny":
            return cls.tiny()
        if isinstance(spec, dict):
            spec = dict(spec)
            preset = spec.pop("preset", "base")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(spec) - known)
            if unknown or preset not in ("base", "tiny"):
                raise ValueError(f"bad encoder spec: unknown fields {unknown} or preset {preset!r}; "
                                 f"known fields: {sorted(known)}, presets: base, tiny")
            base = cls.tiny() if preset == "tiny" else cls()
            return cls.from_dict({**base.to_dict(), **spec})
        raise ValueError(f"an encoder spec is 'base', 'tiny' or a mapping, got {spec!r}")

    @property
    def hop_length(self) -> int:
        """Samples per output frame (320 for HuBERT base)."""
        hop = 1
        for _, _, stride in self.extractor_conv_layer_config:
            hop *= stride
        return hop

    @property
    def frame_rate(self) -> float:
        """Output frames per second (16000 / 320 = 50.0 for HuBERT base)."""
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        out = asdict(self)
        out["extractor_conv_layer_config"] = [list(layer) for layer in self.extractor_conv_layer_config]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys: {unknown}")
        return cls(**data)


def conv_output_lengths(num_samples: Tensor, conv_layers: list[tuple[int, int, int]]) -> Tensor:
    """Frames produced by a stack of unpadded convs: ``L <- floor((L - kernel) / stride) + 1`` per layer, >= 0."""
    length = num_samples
    for _, kernel, stride in conv_layers:
        length = torch.div(length - kernel, stride, rounding_mode="floor") + 1
        length = torch.clamp(length, min=0)
    return length


def _masked_group_norm(x: Tensor, norm: nn.GroupNorm, lengths: Tensor) -> Tensor:
    """GroupNorm of ``x`` (B, C, T) whose statistics use only the first ``lengths[b]`` frames.

    Frames past ``lengths[b]`` come out finite but unspecified (the next conv layers never read
    them for valid frames). Without autograd (inference) ``x`` is consumed: its padding is
    zeroed in place, the statistics are float32-accumulated reductions that make no copy
    (``E[x^2] - mean^2``), and a float32 ``x`` is normalised in place (a bf16 one into one new
    bf16 tensor). The first conv's output is the largest activation of the model (512 x 64
    values per output frame in HuBERT base); the differentiable formula keeps about four
    float32 copies of it alive at once, which made a batch's peak memory grow far past its
    features.
    """
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in norm.parameters())):
        return _masked_group_norm_autograd(x, norm, lengths)
    batch, channels, time = x.shape
    groups, per_group = norm.num_groups, channels // norm.num_groups
    x.mul_((torch.arange(time, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)[:, None, :])  # padding -> 0
    xg = x.view(batch, groups, per_group * time)
    count = (lengths.to(torch.float32) * per_group).clamp(min=1.0)[:, None]  # (B, 1)
    mean = xg.sum(dim=2, dtype=torch.float32) / count  # (B, G)
    mean_sq = torch.linalg.vector_norm(xg, dim=2, dtype=torch.float32).square() / count
    rstd = torch.rsqrt((mean_sq - mean.square()).clamp(min=0.0) + norm.eps)
    scale = rstd.repeat_interleave(per_group, dim=1)  # (B, C)
    shift = -mean.repeat_interleave(per_group, dim=1) * scale
    if norm.affine:
        weight, bias = norm.weight.float()[None, :], norm.bias.float()[None, :]
        scale, shift = scale * weight, shift * weight + bias
    scale, shift = scale[:, :, None], shift[:, :, None]
    if x.dtype == torch.float32:
        return x.mul_(scale).add_(shift)
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))  # one rounding to bf16/fp16


def _masked_group_norm_autograd(x: Tensor, norm: nn.GroupNorm, lengths: Tensor) -> Tensor:
    """:func:`_masked_group_norm` for training: the same statistics, out of place (autograd needs them)."""
    batch, channels, time = x.shape
    groups = norm.num_groups
    xf = x.float()
    mask = (torch.arange(time, device=x.device)[None, :] < lengths[:, None]).to(xf.dtype)  # (B, T)
    xg = xf.view(batch, groups, channels // groups, time)
    m = mask[:, None, None, :]
    count = (lengths.to(xf.dtype) * (channels // groups)).clamp(min=1.0)[:, None, None, None]
    mean = (xg * m).sum(dim=(2, 3), keepdim=True) / count
    var = (((xg - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
    out = ((xg - mean) / torch.sqrt(var + norm.eps)).view(batch, channels, time)
    if norm.affine:
        out = out * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return out.to(x.dtype)


class SpeechEncoder(nn.Module):
    """HuBERT-style encoder returning the last layer's features at 50 Hz."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or EncoderConfig()
        c = self.config
        w2v = torchaudio.models.wav2vec2_model(
            extractor_mode=c.extractor_mode,
            extractor_conv_layer_config=[tuple(layer) for layer in c.extractor_conv_layer_config],
            extractor_conv_bias=c.extractor_conv_bias,
            encoder_embed_dim=c.encoder_embed_dim,
            encoder_projection_dropout=c.projection_dropout,
            encoder_pos_conv_kernel=c.pos_conv_kernel,
            encoder_pos_conv_groups=c.pos_conv_groups,
            encoder_num_layers=c.num_layers,
            encoder_num_heads=c.num_heads,
            encoder_attention_dropout=c.attention_dropout,
            encoder_ff_interm_features=c.ffn_dim,
            encoder_ff_interm_dropout=c.ffn_dropout,
            encoder_dropout=c.dropout,
            encoder_layer_norm_first=c.layer_norm_first,
            encoder_layer_drop=c.layer_drop,
            aux_num_out=None,
        )
        # Segmentation thresholds recorded with this model's checkpoint (set by load_encoder;
        # empty when the file records none): Sylber's Segmenter uses them by default.
        self.segmentation_defaults: dict[str, float] = {}
        # Keep torchaudio's sub-module names so state dicts match Wav2Vec2Model's exactly.
        self.feature_extractor = w2v.feature_extractor
        self.encoder = w2v.encoder

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def embed_dim(self) -> int:
        return self.config.encoder_embed_dim

    @property
    def receptive_field(self) -> int:
        """Fewest input samples that give one output frame (the conv stack's receptive field)."""
        return frame_grid(self.config.extractor_conv_layer_config)[0]

    def frame_lengths(self, num_samples: int | Tensor) -> int | Tensor:
        """Exact number of output frames for ``num_samples`` input samples (int or tensor)."""
        if isinstance(num_samples, Tensor):
            return conv_output_lengths(num_samples, self.config.extractor_conv_layer_config)
        return int(conv_output_lengths(torch.tensor(int(num_samples)), self.config.extractor_conv_layer_config))

    def _prepare(self, waveforms: Tensor, lengths: Tensor | None, check_lengths: bool = True) -> tuple[Tensor, Tensor]:
        """Masked float32 waveforms and long lengths.

        The range check of ``lengths`` reads device values on the host (a sync per batch, and a
        graph break under ``torch.compile``): callers that checked them on the host already
        (:class:`~speechunits.encoders.batch.BatchEncoder`) pass ``check_lengths=False``, and it
        is skipped while compiling.
        """
        if waveforms.ndim == 1:
            waveforms = waveforms.unsqueeze(0)
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms of shape (B, S), got {tuple(waveforms.shape)}")
        batch, total = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=waveforms.device)
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must be (B,) = ({batch},), got shape {tuple(lengths.shape)}")
        if check_lengths and not torch.compiler.is_compiling():
            if bool((lengths > total).any()) or bool((lengths < 1).any()):
                raise ValueError(f"lengths must be (B,) with 1 <= length <= {total}, got {lengths.tolist()}")
        valid = torch.arange(total, device=waveforms.device)[None, :] < lengths[:, None]
        x = waveforms.float()
        if self.config.normalize_waveform:
            n = lengths.to(x.dtype)[:, None]
            mean = (x * valid).sum(dim=1, keepdim=True) / n
            var = (((x - mean) * valid) ** 2).sum(dim=1, keepdim=True) / (n - 1).clamp(min=1.0)
            x = (x - mean) / torch.sqrt(var).clamp(min=1e-5)
        x = x * valid
        return x, lengths

    def _features(self, waveforms: Tensor, lengths: Tensor | None, check_lengths: bool = True) -> tuple[Tensor, Tensor]:
        """Conv front end: (B, T, C) features and frame lengths, padding-invariant."""
        x, length = self._prepare(waveforms, lengths, check_lengths)
        x = x.unsqueeze(1).to(next(self.parameters()).dtype)
        for block in self.feature_extractor.conv_layers:
            x = block.conv(x)
            length = torch.clamp(torch.div(length - block.kernel_size, block.stride, rounding_mode="floor") + 1, min=0)
            if isinstance(block.layer_norm, nn.GroupNorm):
                x = _masked_group_norm(x, block.layer_norm, length)
            elif block.layer_norm is not None:
                x = block.layer_norm(x)
            x = nn.functional.gelu(x)
        return x.transpose(1, 2), length

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None, *,
                check_lengths: bool = True) -> tuple[Tensor, Tensor]:
        """(features (B, T, D) of the last layer, frame_lengths (B,)); padded frames are zero.

        ``check_lengths=False`` skips the range check of ``lengths`` (see :meth:`_prepare`).
        """
        feats, frame_lengths = self._features(waveforms, lengths, check_lengths)
        out = self.encoder(feats, frame_lengths)
        return self._zero_padding(out, frame_lengths), frame_lengths

    def forward_masked(
        self, waveforms: Tensor, lengths: Tensor | None, frame_mask: Tensor, mask_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward` with the projected frames that ``frame_mask`` (B, T) marks replaced by
        ``mask_embedding`` (D,) before the positional convolution (HuBERT's masked prediction)."""
        feats, frame_lengths = self._features(waveforms, lengths)
        x, attention = self.encoder._preprocess(feats, frame_lengths)
        mask = frame_mask[:, : x.shape[1]].to(x.device).unsqueeze(-1)
        x = torch.where(mask, mask_embedding.to(x.dtype), x)
        out = self.encoder.transformer(x, attention_mask=attention)
        return self._zero_padding(out, frame_lengths), frame_lengths

    def extract_features(
        self, waveforms: Tensor, lengths: Tensor | None = None, num_layers: int | None = None, *,
        check_lengths: bool = True,
    ) -> tuple[list[Tensor], Tensor]:
        """Outputs of every transformer layer (or the first ``num_layers``) and the frame lengths.

        For post-LN models (HuBERT base) the last entry equals :meth:`forward`'s output.
        """
        feats, frame_lengths = self._features(waveforms, lengths, check_lengths)
        layers = self.encoder.extract_features(feats, frame_lengths, num_layers)
        return [self._zero_padding(h, frame_lengths) for h in layers], frame_lengths

    @staticmethod
    def _zero_padding(x: Tensor, frame_lengths: Tensor) -> Tensor:
        keep = torch.arange(x.shape[1], device=x.device)[None, :] < frame_lengths[:, None]
        return x * keep[:, :, None].to(x.dtype)
