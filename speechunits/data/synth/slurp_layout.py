"""Plan a SLURP-shaped synthetic corpus: real record format, Festival/espeak-ng speakers.

Sentences come from templates (``slurp_templates.json``): the 18 SLURP scenarios, real
SLURP intent names, and ``{slot}`` placeholders named after real SLURP entity types that
are filled from per-type word lists. Every word is in Festival's CMU lexicon (a test
checks it), lower-case, numbers spelled out.

Layout written under ``OUT/slurp`` (what :func:`speechunits.data.corpora.slurp.load_slurp`
reads):

* ``dataset/slurp/{train,devel,test}.jsonl``: one sentence per line with ``slurp_id``,
  ``sentence``, ``sentence_annotation`` (``"wake me up at [time : five am]"``),
  ``intent``, ``action``, ``scenario``, ``tokens``, ``entities`` (word-index spans) and
  ``recordings`` (several speakers read each sentence, as in SLURP);
* ``dataset/slurp/metadata.json``: ``{slurp_id: {"recordings": {file: {"usrid": ...}}}}``;
* ``audio/slurp_real/audio-<digits>-{headset,close}.flac`` (16 kHz).

Splits have disjoint sentences and speakers. Scenario counts follow fixed, decreasing
weights in :data:`~speechunits.slu.tasks`' SLURP order (most populated first), so the
class order of the SLURP benchmarks is the natural one. Everything follows from the seed.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from speechunits.data.synth.corpus_job import Plan, PlannedUtt, synthesize
from speechunits.data.synth.layouts import GENERATOR_VERSION, SAMPLE_RATE, check_espeak_fraction, check_voices
from speechunits.data.synth.voices import Speaker, make_speakers
from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text

PathLike = str | os.PathLike[str]

SLURP_SPLITS = ("train", "devel", "test")
UTTS_PER_SPEAKER = 10
MAX_SENTENCES = 20000
TEMPLATES_PATH = Path(__file__).with_name("slurp_templates.json")
MICROPHONES = ("headset", "close")
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class SlurpSentence:
    """One annotated sentence: words, its intent and ``(type, first word, end word)`` entities."""

    words: tuple[str, ...]
    scenario: str
    intent: str
    entities: tuple[tuple[str, int, int], ...]

    @property
    def sentence(self) -> str:
        return " ".join(self.words)

    @property
    def annotation(self) -> str:
        """SLURP's inline form: ``wake me up at [time : five am]``."""
        out: list[str] = []
        i = 0
        for etype, start, end in self.entities:
            out += self.words[i:start]
            out.append(f"[{etype} : {' '.join(self.words[start:end])}]")
            i = end
        return " ".join(out + list(self.words[i:]))

    def record(self, slurp_id: int, files: Sequence[str]) -> dict[str, Any]:
        """The SLURP jsonl record of this sentence with its recordings."""
        return {
            "slurp_id": slurp_id,
            "sentence": self.sentence,
            "sentence_annotation": self.annotation,
            "intent": self.intent,
            "action": self.intent[len(self.scenario) + 1:],
            "scenario": self.scenario,
            "tokens": [{"surface": w, "id": i, "lemma": w, "pos": "X"} for i, w in enumerate(self.words)],
            "entities": [{"span": list(range(s, e)), "type": t} for t, s, e in self.entities],
            "recordings": [{"file": f, "wer": 0.0, "ent_wer": 0.0, "status": "correct"} for f in files],
        }


def slurp_templates() -> dict[str, Any]:
    """``{"scenarios": [{"scenario", "intents": {intent: [template, ...]}}], "fillers": {type: [...]}}``."""
    return json.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))


def template_words(data: Mapping[str, Any] | None = None) -> set[str]:
    """Every word a sentence can contain (template words and filler words)."""
    data = data if data is not None else slurp_templates()
    words = {w for fill in data["fillers"].values() for f in fill for w in f.split()}
    for scen in data["scenarios"]:
        for templates in scen["intents"].values():
            words |= {w for t in templates for w in _SLOT.sub(" ", t).split()}
    return words


def scenario_weights(num: int) -> list[float]:
    """Fixed, strictly decreasing weights: the first scenario about 3x as frequent as the last."""
    return [3.0 - 2.0 * i / max(1, num - 1) for i in range(num)]


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split proportionally to ``weights`` (largest remainder, ties to the earlier)."""
    raw = [total * w / sum(weights) for w in weights]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))[: total - sum(counts)]:
        counts[i] += 1
    return counts


def render(template: str, scenario: str, intent: str, fillers: Mapping[str, Sequence[str]],
           rng: random.Random) -> SlurpSentence:
    """Fill every ``{type}`` slot of ``template`` with a random filler of that entity type."""
    words: list[str] = []
    entities: list[tuple[str, int, int]] = []
    for part in re.split(r"(\{\w+\})", template):
        slot = _SLOT.fullmatch(part)
        if slot:
            filler = rng.choice(fillers[slot.group(1)]).split()
            entities.append((slot.group(1), len(words), len(words) + len(filler)))
            words += filler
        else:
            words += part.split()
    return SlurpSentence(tuple(words), scenario, intent, tuple(entities))


def sentences(n: int, rng: random.Random, used: set[str], data: Mapping[str, Any]) -> list[SlurpSentence]:
    """``n`` new sentences (not in ``used``, which is updated).

    With ``n`` >= 18 every scenario gets one sentence, the rest are shared by :func:`scenario_weights`.
    """
    scenarios = data["scenarios"]
    weights = scenario_weights(len(scenarios))
    floor = 1 if n >= len(scenarios) else 0  # every scenario once, when there are enough sentences
    counts = [floor + c for c in allocate(n - floor * len(scenarios), weights)]
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    rng.shuffle(order)
    out = []
    for i in order:
        scen = scenarios[i]
        for _ in range(1000):
            intent = rng.choice(sorted(scen["intents"]))
            sent = render(rng.choice(scen["intents"][intent]), scen["scenario"], intent, data["fillers"], rng)
            if sent.sentence not in used:
                break
        else:
            raise ConfigError(None, f"cannot draw more distinct {scen['scenario']!r} sentences from the templates; "
                                    "ask for fewer sentences")
        used.add(sent.sentence)
        out.append(sent)
    return out


def slurp_plan(
    out: PathLike, splits: Mapping[str, int], *, recordings_per_sentence: int = 2, seed: int = 0,
    voices: Sequence[str] = ("kal", "ked", "slt"), espeak_fraction: float = 0.5,
) -> Plan:
    """The plan of :func:`synthesize_slurp`."""
    out = Path(out).absolute()
    voices = check_voices(voices)
    bad = sorted(set(splits) - set(SLURP_SPLITS))
    if bad or not splits or any(int(n) < 1 for n in splits.values()):
        raise ConfigError(None, f"--splits: SLURP splits are {', '.join(SLURP_SPLITS)} with >= 1 sentence each, "
                                f"found {dict(splits)}")
    if sum(splits.values()) > MAX_SENTENCES:
        raise ConfigError(None, f"--splits: at most {MAX_SENTENCES} sentences in all, found {sum(splits.values())}")
    if recordings_per_sentence < 1:
        raise ConfigError(None, f"--recordings-per-sentence must be >= 1, found {recordings_per_sentence}")
    check_espeak_fraction(espeak_fraction)
    root = out / "slurp"
    text_dir = root / "dataset" / "slurp"
    audio_dir = root / "audio" / "slurp_real"
    config = {"layout": "slurp", "splits": {k: int(v) for k, v in splits.items()}, "seed": seed,
              "recordings_per_sentence": recordings_per_sentence, "voices": list(voices),
              "espeak_fraction": espeak_fraction, "generator": GENERATOR_VERSION}
    data = slurp_templates()
    names = [s for s in SLURP_SPLITS if s in splits]
    n_spk = {s: max(recordings_per_sentence, math.ceil(splits[s] * recordings_per_sentence / UTTS_PER_SPEAKER))
             for s in names}
    id_rng = random.Random(f"{seed}:slurp:ids")
    slurp_ids = iter(sorted(id_rng.sample(range(1000, 100000), sum(splits.values()))))
    usr_ids = iter(id_rng.sample(range(100, 10**6), sum(n_spk.values())))
    stamps = iter(id_rng.sample(range(1_400_000_000, 1_600_000_000), sum(splits.values()) * recordings_per_sentence))
    used: set[str] = set()
    utts: list[PlannedUtt] = []
    speakers: list[Speaker] = []
    records: dict[str, list[dict[str, Any]]] = {}
    for split in names:
        rng = random.Random(f"{seed}:slurp:{split}")
        spks = [replace(s, id=f"{s.sex}O-{next(usr_ids)}")  # SLURP-like usrid: sex, "O", number
                for s in make_speakers([str(j) for j in range(n_spk[split])], voices, rng, espeak_fraction,
                                       offset=len(speakers))]
        speakers += spks
        records[split] = []
        for k, sent in enumerate(sentences(splits[split], rng, used, data)):
            files = []
            for r in range(recordings_per_sentence):
                spk = spks[(k * recordings_per_sentence + r) % len(spks)]
                name = f"audio-{next(stamps)}-{rng.choice(MICROPHONES)}.flac"
                files.append((name, spk.id))
                utts.append(PlannedUtt(Path(name).stem, sent.sentence, spk, str(audio_dir / name), SAMPLE_RATE))
            records[split].append({"record": sent.record(next(slurp_ids), [f for f, _ in files]), "files": files})

    def write_files(made: list[PlannedUtt]) -> None:
        """``<split>.jsonl`` (recordings that were made; sentences with none are left out) and ``metadata.json``."""
        ids = {u.id for u in made}
        metadata: dict[str, Any] = {}
        for split in names:
            lines = []
            for item in records[split]:
                record = dict(item["record"])
                record["recordings"] = [r for r in record["recordings"] if Path(r["file"]).stem in ids]
                if not record["recordings"]:
                    continue
                lines.append(json.dumps(record) + "\n")
                metadata[str(record["slurp_id"])] = {
                    "slurp_id": record["slurp_id"],
                    "recordings": {f: {"usrid": spk} for f, spk in item["files"] if Path(f).stem in ids},
                }
            atomic_write_text(text_dir / f"{split}.jsonl", "".join(lines))
        atomic_write_text(text_dir / "metadata.json", json.dumps(metadata, indent=1, sort_keys=True) + "\n")

    options = {"layout": "slurp", "out": str(out), "splits": ",".join(f"{k}:{int(splits[k])}" for k in names),
               "recordings_per_sentence": str(recordings_per_sentence), "seed": str(seed),
               "voices": ",".join(voices), "espeak_fraction": repr(float(espeak_fraction))}
    return Plan("slurp", out, root, config, options, utts, speakers, write_files)


def synthesize_slurp(
    out: PathLike, splits: Mapping[str, int], *, recordings_per_sentence: int = 2, seed: int = 0, nj: int = 1,
    voices: Sequence[str] = ("kal", "ked", "slt"), espeak_fraction: float = 0.5,
) -> Path:
    """A SLURP-shaped corpus ``OUT/slurp`` (see the module docstring); ``splits`` maps split -> sentences.

    Returns the corpus root (the ``--corpus-dir`` of ``prepare-data --corpus slurp``).
    """
    return synthesize(slurp_plan(out, splits, recordings_per_sentence=recordings_per_sentence, seed=seed,
                                 voices=voices, espeak_fraction=espeak_fraction), nj=nj)
