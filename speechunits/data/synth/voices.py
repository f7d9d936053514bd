"""Synthetic "speakers": a voice plus prosody settings, drawn deterministically from a seed.

Festival voices (``kal``, ``ked``: diphone, 16 kHz; ``slt``: HTS, 32 kHz) take a duration
stretch and, for the diphone voices, an F0 mean and range (``int_lr_params``). The HTS
engine built into Festival 2.5 (hts_engine 1.07) has no F0 option, so ``slt`` speakers
differ by speaking rate only (their ``f0_mean``/``f0_std`` are ``None``). espeak-ng
speakers (used for FSC) are a voice variant, a speed and a pitch.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

STRETCH_RANGE = (0.8, 1.3)
F0_SHIFT_SEMITONES = (-4.0, 5.0)
F0_STD_RANGE = (8.0, 32.0)


@dataclass(frozen=True)
class FestivalVoice:
    """An installed Festival voice and how to drive it."""

    key: str
    name: str  # Festival voice name: (voice_<name>)
    package: str  # Debian package that installs it
    engine: str  # "diphone" | "hts"
    sample_rate: int
    sex: str
    base_f0: float | None  # target_f0_mean of the voice definition (diphone only)


FESTIVAL_VOICES: dict[str, FestivalVoice] = {
    "kal": FestivalVoice("kal", "kal_diphone", "festvox-kallpc16k", "diphone", 16000, "M", 105.0),
    "ked": FestivalVoice("ked", "ked_diphone", "festvox-kdlpc16k", "diphone", 16000, "M", 105.0),
    "slt": FestivalVoice("slt", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "hts", 32000, "F", None),
}

ESPEAK_VARIANTS: tuple[tuple[str, str], ...] = tuple(
    [(f"m{i}", "M") for i in range(1, 8)] + [(f"f{i}", "F") for i in range(1, 6)]
)
ESPEAK_BASES = ("en-us", "en", "en-gb-x-rp")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker. ``engine`` is ``"festival"`` or ``"espeak"``."""

    id: str
    engine: str
    voice: str  # festival voice key, or espeak voice spec such as "en-us+m3"
    sex: str
    stretch: float = 1.0  # festival duration stretch (>1 slower)
    f0_mean: float | None = None  # festival diphone target F0 mean (Hz)
    f0_std: float | None = None  # festival diphone target F0 std (Hz)
    speed: int | None = None  # espeak words per minute
    pitch: int | None = None  # espeak pitch 0-99

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def festival_speaker(speaker_id: str, voice_key: str, rng: random.Random) -> Speaker:
    """A Festival speaker with prosody drawn from ``rng``."""
    voice = FESTIVAL_VOICES[voice_key]
    stretch = round(rng.uniform(*STRETCH_RANGE), 3)
    f0_mean = f0_std = None
    shift = rng.uniform(*F0_SHIFT_SEMITONES)
    spread = rng.uniform(*F0_STD_RANGE)
    if voice.base_f0 is not None:
        f0_mean = round(voice.base_f0 * 2 ** (shift / 12), 1)
        f0_std = round(spread, 1)
    return Speaker(speaker_id, "festival", voice_key, voice.sex, stretch, f0_mean, f0_std)


def espeak_speaker(speaker_id: str, rng: random.Random) -> Speaker:
    """An espeak-ng speaker: base voice + variant, speed 130-185 wpm, pitch 25-75."""
    variant, sex = rng.choice(ESPEAK_VARIANTS)
    base = rng.choice(ESPEAK_BASES)
    return Speaker(
        speaker_id, "espeak", f"{base}+{variant}", sex, speed=rng.randint(130, 185), pitch=rng.randint(25, 75)
    )


def make_speakers(
    ids: list[str], voices: tuple[str, ...], rng: random.Random, espeak_fraction: float = 0.0, offset: int = 0
) -> list[Speaker]:
    """Speakers for ``ids``: Festival voices cycled over ``voices`` from index ``offset``, a fraction espeak-ng."""
    unknown = [v for v in voices if v not in FESTIVAL_VOICES]
    if unknown:
        raise ValueError(f"unknown Festival voice(s) {unknown}; known: {sorted(FESTIVAL_VOICES)}")
    order = list(voices)
    out = []
    fest_i = offset
    for sid in ids:
        if espeak_fraction > 0 and rng.random() < espeak_fraction:
            out.append(espeak_speaker(sid, rng))
        elif order:
            out.append(festival_speaker(sid, order[fest_i % len(order)], rng))
            fest_i += 1
        else:
            out.append(espeak_speaker(sid, rng))
    return out
