"""``task.augment`` of Sylber training: speed, pitch and reverb, and the order they run in.

::

    crop --speed--> teacher (and the stage-1 segments, scaled by the same factor)
                \\--pitch--reverb--noise (task.noise)--> student

Speed changes durations, so it comes first and both sides see it; pitch and reverb keep the
duration and the time alignment and touch the student's input only, like the noise. Each
has its own probability (per utterance) and range, and all are off unless configured::

    task:
      augment:
        speed:  {prob: 0.3, factor_range: [0.9, 1.1]}
        pitch:  {prob: 0.3, semitone_range: [-2, 2]}
        reverb: {prob: 0.3, rt60_range: [0.2, 0.8], drr_range: [0, 10], early_reflections: 4}

Each augmentation draws from its own generator (the task seeds one per step, rank and kind),
so switching one on or off does not change the draws of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

import torch

from speechunits.errors import ConfigError
from speechunits.sylber.pitch import PitchShifter
from speechunits.sylber.reverb import ReverbAugmenter
from speechunits.sylber.speed import SpeedPerturber

GeneratorFor = Callable[[str, "torch.device | str"], torch.Generator]
"""``generator_for(kind, device)``: the step's generator of one augmentation kind, on ``device``."""

KINDS: dict[str, type] = {"speed": SpeedPerturber, "pitch": PitchShifter, "reverb": ReverbAugmenter}
RANGES = {"factor_range", "semitone_range", "rt60_range", "drr_range"}


def _build(kind: str, options: Any, sample_rate: int) -> Any:
    cls = KINDS[kind]
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigError(None, f"task.augment.{kind} must be a mapping of options, got {options!r}")
    known = {f.name for f in fields(cls)} - {"sample_rate"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(None, f"unknown task.augment.{kind} options {unknown}; known: {sorted(known)}")
    kwargs = dict(options)
    for name in RANGES & set(kwargs):
        value = kwargs[name]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(None, f"task.augment.{kind}.{name} must be [lo, hi], got {value!r}")
        kwargs[name] = (float(value[0]), float(value[1]))
    if "sample_rate" in {f.name for f in fields(cls)}:
        kwargs["sample_rate"] = sample_rate
    return cls(**kwargs)


@dataclass
class Augmentations:
    """The configured augmentations (each a no-op with its default ``prob`` 0)."""

    speed: SpeedPerturber = field(default_factory=SpeedPerturber)
    pitch: PitchShifter = field(default_factory=PitchShifter)
    reverb: ReverbAugmenter = field(default_factory=ReverbAugmenter)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, sample_rate: int = 16000) -> "Augmentations":
        """From the ``task.augment`` mapping; unknown kinds or options are a ConfigError."""
        options = options or {}
        if not isinstance(options, Mapping):
            raise ConfigError(None, f"task.augment must be a mapping, got {options!r}")
        unknown = sorted(set(options) - set(KINDS))
        if unknown:
            raise ConfigError(None, f"unknown task.augment kinds {unknown}; known: {sorted(KINDS)} "
                                    "(noise is configured under task.noise)")
        return cls(**{kind: _build(kind, options.get(kind), sample_rate) for kind in KINDS})

    @property
    def enabled(self) -> list[str]:
        """The kinds with a non-zero probability, in the order they run."""
        return [kind for kind in ("speed", "pitch", "reverb") if getattr(self, kind).prob > 0]

    def both(self, wavs: torch.Tensor, lengths: torch.Tensor,
             generator_for: GeneratorFor) -> tuple[torch.Tensor, torch.Tensor, list[Fraction] | None]:
        """Speed perturbation of the crops teacher and student both see: (wavs, lengths, factors);
        ``factors`` is None when speed perturbation is off."""
        if self.speed.prob <= 0:
            return wavs, lengths, None
        return self.speed(wavs, lengths, generator_for("speed", "cpu"))

    def student(self, wavs: torch.Tensor, lengths: torch.Tensor, generator_for: GeneratorFor) -> torch.Tensor:
        """Pitch shift then reverberation of the student's input (the noise comes after, in the task)."""
        if self.pitch.prob > 0:
            wavs = self.pitch(wavs, lengths, generator_for("pitch", "cpu"))
        if self.reverb.prob > 0:
            wavs = self.reverb(wavs, lengths, generator_for("reverb", wavs.device))
        return wavs
