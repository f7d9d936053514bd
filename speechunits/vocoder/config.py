"""The vocoder's model configuration (:class:`VocoderConfig`), stored in every checkpoint.

It fixes what the model reads (``input``: log-mel frames, frame-rate unit ids, or syllable
tokens as cluster ids or stored segment embeddings), the frame grids (``mel.hop_length``
samples per generator frame, ``unit_hop`` samples per unit frame) and the optional
conditioning (F0, speaker, duration predictor). Training options live in the task options
(``task.*``), not here: this is only what a loaded model needs to run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from speechunits.errors import ConfigError
from speechunits.features.mel import MelConfig

GENERATORS = ("hifigan_v1", "hifigan_v2", "hifigan_v3", "istft")
INPUTS = ("mel", "frame_units", "syllables")
SYLLABLE_SOURCES = ("cluster", "embedding")


@dataclass
class VocoderConfig:
    """What a vocoder model is: its input, front end, generator and conditioning."""

    generator: str = "hifigan_v1"
    input: str = "mel"
    mel: MelConfig = field(default_factory=MelConfig)
    unit_hop: int = 320
    vocab_size: int | None = None
    silence_id: int | None = None
    syllable_source: str = "cluster"
    embedding_dim: int | None = None
    cond_dim: int = 256
    use_f0: bool = False
    num_speakers: int = 0
    duration_predictor: bool = False
    generator_overrides: dict[str, Any] = field(default_factory=dict)
    frontend_kernel: int = 7
    duration_channels: int = 256
    duration_kernel: int = 3
    duration_dropout: float = 0.5
    magnitude_prior: bool = False  # mel input + istft generator: add log(pinv(mel filterbank) @ mel) to the log-magnitude

    def __post_init__(self) -> None:
        if isinstance(self.mel, Mapping):
            self.mel = MelConfig.from_dict(dict(self.mel))
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def hop_length(self) -> int:
        """Samples per generator frame."""
        return int(self.mel.hop_length)

    @property
    def sample_rate(self) -> int:
        return int(self.mel.sample_rate)

    @property
    def upsample(self) -> int:
        """Generator frames per unit frame (``unit_hop // mel.hop_length``)."""
        return self.unit_hop // self.hop_length

    @property
    def uses_ids(self) -> bool:
        """True when the model reads unit ids (frame units, or syllables as cluster ids)."""
        return self.input == "frame_units" or (self.input == "syllables" and self.syllable_source == "cluster")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """ConfigError for every inconsistent combination."""
        def bad(problem: str) -> ConfigError:
            return ConfigError(None, f"vocoder config: {problem}")

        if self.generator not in GENERATORS:
            raise bad(f"generator={self.generator!r}; expected one of {', '.join(GENERATORS)}")
        if self.input not in INPUTS:
            raise bad(f"input={self.input!r}; expected one of {', '.join(INPUTS)}")
        if self.syllable_source not in SYLLABLE_SOURCES:
            raise bad(f"syllable_source={self.syllable_source!r}; expected one of {', '.join(SYLLABLE_SOURCES)}")
        if self.cond_dim <= 0:
            raise bad(f"cond_dim must be > 0, got {self.cond_dim}")
        if self.frontend_kernel <= 0 or self.frontend_kernel % 2 == 0:
            raise bad(f"frontend_kernel must be odd and > 0, got {self.frontend_kernel}")
        if self.duration_channels <= 0 or self.duration_kernel <= 0 or self.duration_kernel % 2 == 0:
            raise bad(f"duration_channels must be > 0 and duration_kernel odd, got {self.duration_channels}, "
                      f"{self.duration_kernel}")
        if not 0.0 <= self.duration_dropout < 1.0:
            raise bad(f"duration_dropout must be in [0, 1), got {self.duration_dropout}")
        if self.num_speakers < 0:
            raise bad(f"num_speakers must be >= 0, got {self.num_speakers}")
        if self.magnitude_prior and (self.input != "mel" or self.generator != "istft"):
            raise bad("magnitude_prior needs input=mel and generator=istft (it adds the pseudo-inverse of the mel "
                      "filterbank to the predicted log-magnitude)")
        hop = self.hop_length
        if hop <= 0:
            raise bad(f"mel.hop_length must be > 0, got {hop}")
        if self.input != "mel":
            if self.unit_hop <= 0 or self.unit_hop % hop:
                raise bad(f"unit_hop={self.unit_hop} must be a positive multiple of mel.hop_length={hop}")
        if self.uses_ids:
            if self.vocab_size is None or self.vocab_size <= 0:
                raise bad(f"input={self.input!r} ({self.syllable_source if self.input == 'syllables' else 'ids'}) "
                          "needs vocab_size (the unit set's vocab_size, silence id included)")
            if self.silence_id is None:
                raise bad(f"input={self.input!r} needs silence_id (the unit set's special_ids.silence)")
            if not 0 <= self.silence_id < self.vocab_size:
                raise bad(f"silence_id={self.silence_id} is not < vocab_size={self.vocab_size}")
        if self.input == "syllables" and self.syllable_source == "embedding":
            if self.embedding_dim is None or self.embedding_dim <= 0:
                raise bad("input=syllables with syllable_source=embedding needs embedding_dim (the unit set's)")
        if self.duration_predictor and not self.uses_ids:
            raise bad("duration_predictor needs id inputs (frame_units, or syllables with syllable_source=cluster)")
        if not isinstance(self.generator_overrides, Mapping):
            raise bad(f"generator_overrides must be a mapping, got {type(self.generator_overrides).__name__}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        d["mel"] = self.mel.to_dict()
        d["generator_overrides"] = dict(self.generator_overrides)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocoderConfig:
        """ConfigError on unknown keys or invalid values."""
        if not isinstance(d, Mapping):
            raise ConfigError(None, f"vocoder config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(None, f"vocoder config: unknown keys {unknown}; known: {sorted(known)}")
        kwargs = dict(d)
        if "mel" in kwargs:
            mel = kwargs["mel"]
            kwargs["mel"] = mel if isinstance(mel, MelConfig) else MelConfig.from_dict(dict(mel or {}))
        if "generator_overrides" in kwargs:
            kwargs["generator_overrides"] = dict(kwargs["generator_overrides"] or {})
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise ConfigError(None, f"vocoder config: {err}") from err
