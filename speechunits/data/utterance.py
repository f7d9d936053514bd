"""The one record type every corpus loader, manifest and pipeline in speechunits passes around."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from speechunits.audio import audio_info, is_pipe_command
from speechunits.io_utils import sha256_json


@dataclass
class Utterance:
    """One utterance of a corpus.

    Attributes:
        id: unique utterance id (Kaldi convention: speaker-prefixed where the corpus allows).
        audio: path of the audio file (absolute, or relative to the manifest's root), or a
            Kaldi ``wav.scp`` pipe command ending in ``|``.
        text: the transcript, or None when the corpus has none.
        speaker: the speaker id, or None.
        num_samples: length in samples at ``sample_rate``, when known.
        sample_rate: sample rate of the file, when known.
        duration: seconds, when known.
        extra: corpus-specific labels (FSC action/object/location/intent, SLURP scenario,
            alignment paths, ...); must be JSON-serialisable.
    """

    id: str
    audio: str
    text: str | None = None
    speaker: str | None = None
    num_samples: int | None = None
    sample_rate: int | None = None
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; None fields and an empty ``extra`` are omitted."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        if not d.get("extra"):
            d.pop("extra", None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Utterance":
        """Inverse of :meth:`to_dict`; unknown keys go into ``extra``."""
        known = {"id", "audio", "text", "speaker", "num_samples", "sample_rate", "duration", "extra"}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(
            id=str(d["id"]),
            audio=str(d["audio"]),
            text=d.get("text"),
            speaker=d.get("speaker"),
            num_samples=d.get("num_samples"),
            sample_rate=d.get("sample_rate"),
            duration=d.get("duration"),
            extra=extra,
        )


def stored_length(utt: Utterance) -> tuple[int, int]:
    """(samples per channel, sample rate) of an utterance's audio file: from the manifest when it records both,
    else from the audio header (AudioError when unreadable).

    These are the file's own values, what a unit record holds (docs/unit-format.md), whatever rate
    the audio is read at; :mod:`speechunits.data.pipeline` plans batches with them and checks the
    decoded audio against them.
    """
    if utt.num_samples is not None and utt.sample_rate is not None:
        return int(utt.num_samples), int(utt.sample_rate)
    info = audio_info(utt.audio)
    return info.num_samples, info.sample_rate


def manifest_fingerprint(utts: list[Utterance]) -> str:
    """Hash of what decides a corpus job's output per utterance: ids, audio, speaker, text."""
    return sha256_json([[u.id, u.audio, u.speaker, u.text] for u in sorted(utts, key=lambda u: u.id)])


def common_audio_dir(utts: list[Utterance]) -> str | None:
    """The deepest directory holding every absolute audio path of a corpus (normalised, symlinks kept).

    Unit sets declare it as their ``audio_root`` so their audio paths are relative to it and
    a moved corpus is one edited line. None when no utterance has an absolute file path
    (pipe commands ``... |`` are left out).
    """
    dirs = {os.path.dirname(os.path.normpath(u.audio)) for u in utts
            if os.path.isabs(u.audio) and not is_pipe_command(u.audio)}
    return os.path.commonpath(sorted(dirs)) if dirs else None
