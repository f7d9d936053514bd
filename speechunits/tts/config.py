"""What a Capacitron model is (:class:`TTSConfig`), stored in every model file.

Two parts: the Tacotron2 backbone (:class:`TacotronConfig`) and the variational prosody
(:class:`ProsodyConfig`). Training options (data, batch size, loss weights) live in the
task options (``task.*``, :mod:`speechunits.tts.task`), not here: this is only what a loaded
model needs to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from speechunits.errors import ConfigError
from speechunits.features.mel import MelConfig

ATTENTIONS = ("location", "dynamic_conv")
PROSODY_KINDS = ("none", "V", "VT", "VTS", "hierarchical")
"""``none``: plain Tacotron2. ``V``: q(z|x). ``VT``: q(z|x, text summary). ``VTS``: q(z|x, text, speaker).
``hierarchical``: z_s -> z_p with a learned conditional prior p(z_p|z_s), conditioned like ``VT``
(and on the speaker when the model has speakers)."""


def _from_mapping(cls: type, d: Mapping[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(None, f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**dict(d))


@dataclass
class TacotronConfig:
    """The Tacotron2 backbone (Shen et al., 2018); defaults are the paper's sizes."""

    num_symbols: int = 0  # set from the symbol table
    embed_dim: int = 512
    encoder_convs: int = 3
    encoder_kernel: int = 5
    encoder_dim: int = 512  # BiLSTM output (two directions of encoder_dim // 2)
    attention: str = "location"  # location | dynamic_conv
    attention_dim: int = 128
    attention_rnn_dim: int = 1024
    location_filters: int = 32
    location_kernel: int = 31
    dca_filters: int = 8  # dynamic convolution attention: static and dynamic filters
    dca_kernel: int = 21
    dca_prior_length: int = 11
    dca_prior_alpha: float = 0.1
    dca_prior_beta: float = 0.9
    prenet_dim: int = 256
    decoder_dim: int = 1024
    reduction: int = 2  # r: mel frames per decoder step
    postnet_dim: int = 512
    postnet_convs: int = 5
    postnet_kernel: int = 5
    dropout: float = 0.5  # encoder / postnet convolutions
    prenet_dropout: float = 0.5  # always on, also at inference (Tacotron2)
    rnn_dropout: float = 0.1  # on the attention and decoder LSTM outputs
    num_speakers: int = 0  # > 0: a speaker embedding joins the decoder memory
    speaker_dim: int = 64

    def validate(self) -> None:
        def bad(problem: str) -> ConfigError:
            return ConfigError(None, f"tacotron config: {problem}")

        if self.attention not in ATTENTIONS:
            raise bad(f"attention={self.attention!r}; expected one of {', '.join(ATTENTIONS)}")
        if self.reduction < 1:
            raise bad(f"reduction={self.reduction}; expected >= 1")
        if self.encoder_dim % 2:
            raise bad(f"encoder_dim={self.encoder_dim} must be even (two LSTM directions)")
        for key in ("embed_dim", "attention_dim", "attention_rnn_dim", "prenet_dim", "decoder_dim", "postnet_dim"):
            if getattr(self, key) < 1:
                raise bad(f"{key}={getattr(self, key)}; expected >= 1")
        if self.dca_kernel % 2 == 0 or self.location_kernel % 2 == 0:
            raise bad("location_kernel and dca_kernel must be odd (centred filters)")


@dataclass
class ProsodyConfig:
    """The variational prosody embedding (Battenberg et al., 2019) and its capacities (nats)."""

    kind: str = "none"
    latent_dim: int = 128  # z (hierarchical: z_s and z_p each)
    capacity: float = 150.0  # C for V / VT / VTS
    capacity_s: float = 50.0  # hierarchical: C_s of z_s
    capacity_p: float = 100.0  # hierarchical: C_p of z_p given z_s
    ref_channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64, 128, 128])
    ref_rnn_dim: int = 128
    text_summary_dim: int = 128
    posterior_hidden: int = 128
    min_scale: float = 1e-4  # floor of every posterior/prior standard deviation (no log-variance blow-up)

    def validate(self) -> None:
        if self.kind not in PROSODY_KINDS:
            raise ConfigError(None, f"prosody config: kind={self.kind!r}; expected one of {', '.join(PROSODY_KINDS)}")
        if self.latent_dim < 1:
            raise ConfigError(None, f"prosody config: latent_dim={self.latent_dim}; expected >= 1")
        for key in ("capacity", "capacity_s", "capacity_p"):
            if getattr(self, key) < 0:
                raise ConfigError(None, f"prosody config: {key}={getattr(self, key)}; a capacity is >= 0 nats")
        if not self.ref_channels:
            raise ConfigError(None, "prosody config: ref_channels is empty")

    @property
    def variational(self) -> bool:
        return self.kind != "none"

    @property
    def hierarchical(self) -> bool:
        return self.kind == "hierarchical"

    @property
    def uses_text(self) -> bool:
        """The posterior reads a summary of the text: a reference needs its transcript."""
        return self.kind in ("VT", "VTS", "hierarchical")

    @property
    def capacities(self) -> list[float]:
        """One capacity per Lagrange multiplier: ``[C]``, or ``[C_s, C_p]``."""
        if not self.variational:
            return []
        return [self.capacity_s, self.capacity_p] if self.hierarchical else [self.capacity]

    @property
    def embedding_dim(self) -> int:
        """Width of the prosody embedding appended to the decoder memory."""
        if not self.variational:
            return 0
        return 2 * self.latent_dim if self.hierarchical else self.latent_dim


@dataclass
class TTSConfig:
    """A whole model: mel features, front end, backbone and prosody."""

    mel: MelConfig = field(default_factory=lambda: MelConfig(sample_rate=22050, hop_length=256, win_length=1024,
                                                             n_fft=1024, n_mels=80, f_max=8000.0))
    frontend: dict[str, Any] = field(default_factory=lambda: {"kind": "phonemes", "language": "en-us"})
    tacotron: TacotronConfig = field(default_factory=TacotronConfig)
    prosody: ProsodyConfig = field(default_factory=ProsodyConfig)

    def __post_init__(self) -> None:
        if isinstance(self.mel, Mapping):
            self.mel = MelConfig.from_dict(dict(self.mel))
        if isinstance(self.tacotron, Mapping):
            self.tacotron = _from_mapping(TacotronConfig, self.tacotron, "tacotron config")
        if isinstance(self.prosody, Mapping):
            self.prosody = _from_mapping(ProsodyConfig, self.prosody, "prosody config")
        self.tacotron.validate()
        self.prosody.validate()
        if self.prosody.kind == "VTS" and self.tacotron.num_speakers < 1:
            raise ConfigError(None, "prosody kind VTS conditions on the speaker: the training set needs speaker labels "
                                    "(task.use_speakers=true)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TTSConfig:
        return _from_mapping(cls, d, "tts config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
