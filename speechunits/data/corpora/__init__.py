"""Loaders for the real published layouts of LibriSpeech, LJSpeech, Fluent Speech Commands, SLURP, speechocean762 and ZeroSpeech 2021.

Each loader returns ``list[Utterance]`` sorted by id with absolute audio paths and raises
:class:`speechunits.errors.ManifestError` naming the file and the problem. :data:`CORPORA`
maps a corpus name to its loader and split names; ``speechunits prepare-data`` uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speechunits.data.corpora import fsc, librispeech, ljspeech, slurp, speechocean762, zr2021
from speechunits.data.corpora.fsc import load_fsc
from speechunits.data.corpora.librispeech import load_librispeech
from speechunits.data.corpora.ljspeech import load_ljspeech
from speechunits.data.corpora.slurp import load_slurp
from speechunits.data.corpora.speechocean762 import load_speechocean762
from speechunits.data.corpora.zr2021 import load_zr2021
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Corpus:
    """A registered corpus: its loader, split names and which optional inputs it takes."""

    name: str
    loader: Callable[..., list[Utterance]]
    splits: tuple[str, ...]
    layout: str
    takes_alignments: bool = False
    takes_audio_dir: bool = False

    def load(
        self, root: PathLike, split: str, *, alignments_dir: PathLike | None = None, audio_dir: PathLike | None = None
    ) -> list[Utterance]:
        """Call the loader; ConfigError for an option this corpus does not take."""
        kwargs: dict[str, PathLike] = {}
        for flag, value, allowed, key in (
            ("--alignments", alignments_dir, self.takes_alignments, "alignments_dir"),
            ("--audio-dir", audio_dir, self.takes_audio_dir, "audio_dir"),
        ):
            if value is None:
                continue
            if not allowed:
                raise ConfigError(Path(value), f"{flag} is not supported for corpus {self.name!r}")
            kwargs[key] = value
        return self.loader(root, split, **kwargs)


CORPORA: dict[str, Corpus] = {
    "librispeech": Corpus(
        "librispeech", load_librispeech, librispeech.SPLITS, librispeech.LAYOUT, takes_alignments=True
    ),
    "ljspeech": Corpus("ljspeech", load_ljspeech, ljspeech.SPLITS, ljspeech.LAYOUT),
    "fsc": Corpus("fsc", load_fsc, fsc.SPLITS, fsc.LAYOUT),
    "slurp": Corpus("slurp", load_slurp, slurp.SPLITS, slurp.LAYOUT, takes_audio_dir=True),
    "speechocean762": Corpus("speechocean762", load_speechocean762, speechocean762.SPLITS, speechocean762.LAYOUT),
    "zr2021": Corpus("zr2021", load_zr2021, zr2021.SPLITS, zr2021.LAYOUT),
}

__all__ = ["CORPORA", "Corpus", "load_fsc", "load_librispeech", "load_ljspeech", "load_slurp", "load_zr2021"]
