"""Plan LibriSpeech-, LJSpeech-, FSC- and ZeroSpeech-2021-shaped synthetic corpora (plus TextGrid alignments).

Each ``*_plan`` function builds a deterministic :class:`~.corpus_job.Plan` from the seed and
sizes alone: utterance ids, texts, speakers, output paths, and the layout's transcript and
metadata files. Each ``synthesize_*`` function builds its plan and generates it on the
sharded-job runner (:func:`~.corpus_job.synthesize`: ``nj`` local jobs, resume after a kill,
a rerun of a complete corpus returns at once, byte-identical output for any ``nj``; see
:mod:`speechunits.data.synth.corpus_job`). ``speechunits synth-corpus`` builds the same plans
from its options.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import string
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechunits.audio import audio_info
from speechunits.data.corpora.zr2021 import GOLD_COLUMNS
from speechunits.data.synth.corpus_job import Plan, PlannedUtt, synthesize
from speechunits.data.synth.probes import LANGUAGE, lexical_pairs, syntactic_pairs
from speechunits.data.synth.text import librispeech_transcript, unique_sentences
from speechunits.data.synth.voices import FESTIVAL_VOICES, Speaker, festival_speaker, make_speakers
from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_text
from speechunits.text.espeak import Espeak

PathLike = str | os.PathLike[str]

GENERATOR_VERSION = "speechunits.synth/1"
UTTS_PER_SPEAKER = 10
LJ_SAMPLE_RATE = 22050
SAMPLE_RATE = 16000
FSC_INTENTS_PATH = Path(__file__).with_name("fsc_intents.json")


# --------------------------------------------------------------------------- helpers


def _distinct_ints(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    if n > hi - lo:
        raise ConfigError(None, f"cannot draw {n} distinct ids from [{lo}, {hi})")
    return rng.sample(range(lo, hi), n)


def check_voices(voices: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in voices if v not in FESTIVAL_VOICES]
    if unknown or not voices:
        raise ConfigError(None, f"unknown or no Festival voice(s) {list(voices)}; choose from {sorted(FESTIVAL_VOICES)}")
    return tuple(voices)


def check_espeak_fraction(fraction: float) -> None:
    """ConfigError unless the share of espeak-ng speakers is in [0, 1]."""
    if not 0 <= fraction <= 1:
        raise ConfigError(None, f"--espeak-fraction must be in [0, 1], found {fraction}")


# --------------------------------------------------------------------------- LibriSpeech


def librispeech_plan(out: PathLike, splits: Mapping[str, int], *, seed: int = 0,
                     voices: Sequence[str] = ("kal", "ked", "slt")) -> Plan:
    """The plan of :func:`synthesize_librispeech`."""
    out = Path(out).absolute()
    voices = check_voices(voices)
    if not splits or any(int(n) < 1 for n in splits.values()):
        raise ConfigError(None, f"every split needs at least one utterance, found {dict(splits)}")
    root = out / "LibriSpeech"
    config = {"layout": "librispeech", "splits": {k: int(v) for k, v in splits.items()}, "seed": seed,
              "voices": list(voices), "generator": GENERATOR_VERSION}
    names = sorted(splits)
    n_spk = {s: max(1, min(splits[s], math.ceil(splits[s] / UTTS_PER_SPEAKER))) for s in names}
    id_rng = random.Random(f"{seed}:librispeech:ids")
    spk_ids = iter(_distinct_ints(id_rng, sum(n_spk.values()), 100, 10000))
    chap_ids = iter(_distinct_ints(id_rng, 2 * sum(n_spk.values()), 1000, 200000))
    used: set[str] = set()
    utts: list[PlannedUtt] = []
    speakers: list[Speaker] = []
    split_of: dict[str, str] = {}
    chapters: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for split in names:
        rng = random.Random(f"{seed}:librispeech:{split}")
        sentences = unique_sentences(splits[split], rng, used)
        spks = make_speakers([str(next(spk_ids)) for _ in range(n_spk[split])], voices, rng, offset=len(speakers))
        spk_chaps = {s.id: [str(next(chap_ids)) for _ in range(rng.choice((1, 2)))] for s in spks}
        speakers += spks
        for s in spks:
            split_of[s.id] = split
        for i, sent in enumerate(sentences):
            spk = spks[i % len(spks)]
            chap = rng.choice(spk_chaps[spk.id])
            key = (split, spk.id, chap)
            utt_id = f"{spk.id}-{chap}-{len(chapters[key]):04d}"
            chapters[key].append((utt_id, librispeech_transcript(sent.normalized)))
            utts.append(PlannedUtt(
                utt_id, sent.normalized, spk,
                str(root / split / spk.id / chap / f"{utt_id}.flac"), SAMPLE_RATE,
                str(out / "alignments" / split / spk.id / chap / f"{utt_id}.TextGrid"),
            ))

    def write_files(made: list[PlannedUtt]) -> None:
        """One ``SPK-CHAP.trans.txt`` per chapter, then ``SPEAKERS.TXT``."""
        ids = {u.id for u in made}
        for (split, spk, chap), lines in sorted(chapters.items()):
            text = "".join(f"{uid} {words}\n" for uid, words in lines if uid in ids)
            if text:
                atomic_write_text(root / split / spk / chap / f"{spk}-{chap}.trans.txt", text)
        _write_speakers_txt(root, made, speakers, split_of)

    options = {"layout": "librispeech", "out": str(out), "splits": ",".join(f"{k}:{int(v)}" for k, v in splits.items()),
               "seed": str(seed), "voices": ",".join(voices)}
    return Plan("librispeech", out, root, config, options, utts, speakers, write_files)


def synthesize_librispeech(
    out: PathLike, splits: Mapping[str, int], *, seed: int = 0, nj: int = 1, voices: Sequence[str] = ("kal", "ked", "slt")
) -> Path:
    """A LibriSpeech-shaped corpus ``OUT/LibriSpeech/<split>/...`` with ``OUT/alignments/<split>/...`` TextGrids.

    ``splits`` maps split names to utterance counts. Splits have disjoint sentences and
    speakers (about ``UTTS_PER_SPEAKER`` utterances each, 1-2 chapters per speaker).
    Returns the ``OUT/LibriSpeech`` path.
    """
    return synthesize(librispeech_plan(out, splits, seed=seed, voices=voices), nj=nj)


def _write_speakers_txt(root: Path, made: Sequence[PlannedUtt], speakers: Sequence[Speaker],
                        split_of: Mapping[str, str]) -> None:
    minutes: dict[str, float] = defaultdict(float)
    for utt in made:
        minutes[utt.speaker.id] += audio_info(utt.audio).duration / 60
    lines = [
        "; Synthetic speakers generated by speechunits synth-corpus (Festival/espeak-ng).",
        "; Fields: reader ID | sex | subset | minutes of audio | name (voice and prosody)",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for s in sorted(speakers, key=lambda s: int(s.id)):
        name = f"{s.voice} stretch={s.stretch}" + (f" f0={s.f0_mean}+-{s.f0_std}" if s.f0_mean is not None else "")
        lines.append(f"{s.id:<5}| {s.sex} | {split_of[s.id]:<17}| {minutes[s.id]:5.2f} | {name}")
    atomic_write_text(root / "SPEAKERS.TXT", "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- LJSpeech


def ljspeech_plan(out: PathLike, num_utts: int, *, seed: int = 0, voice: str = "slt") -> Plan:
    """The plan of :func:`synthesize_ljspeech`."""
    out = Path(out).absolute()
    check_voices([voice])
    if num_utts < 1:
        raise ConfigError(None, f"--num-utts must be >= 1, found {num_utts}")
    root = out / "LJSpeech-1.1"
    config = {"layout": "ljspeech", "num_utts": int(num_utts), "seed": seed, "voice": voice,
              "generator": GENERATOR_VERSION}
    rng = random.Random(f"{seed}:ljspeech")
    sentences = unique_sentences(num_utts, rng, set())
    utts: list[PlannedUtt] = []
    speakers: list[Speaker] = []
    rows: dict[str, str] = {}
    for i, sent in enumerate(sentences):
        utt_id = f"LJ{1 + i // 100:03d}-{1 + i % 100:04d}"
        spk = festival_speaker("LJ", voice, rng)
        speakers.append(spk)
        rows[utt_id] = f"{utt_id}|{sent.raw}|{sent.normalized}\n"
        utts.append(PlannedUtt(utt_id, sent.raw, spk, str(root / "wavs" / f"{utt_id}.wav"), LJ_SAMPLE_RATE,
                               str(out / "alignments" / "ljspeech" / f"{utt_id}.TextGrid")))

    def write_files(made: list[PlannedUtt]) -> None:
        """``metadata.csv``: ``id|raw text|normalized text``."""
        atomic_write_text(root / "metadata.csv", "".join(rows[u.id] for u in made))

    options = {"layout": "ljspeech", "out": str(out), "num_utts": str(num_utts), "seed": str(seed), "voice": voice}
    return Plan("ljspeech", out, root, config, options, utts, speakers, write_files)


def synthesize_ljspeech(out: PathLike, num_utts: int, *, seed: int = 0, nj: int = 1, voice: str = "slt") -> Path:
    """An LJSpeech-shaped corpus ``OUT/LJSpeech-1.1`` (22050 Hz wavs, one voice, per-clip prosody).

    ``metadata.csv`` holds ``id|raw text|normalized text`` (raw texts may contain digits
    that Festival reads out). Alignments go to ``OUT/alignments/ljspeech/<id>.TextGrid``.
    Returns the ``OUT/LJSpeech-1.1`` path.
    """
    return synthesize(ljspeech_plan(out, num_utts, seed=seed, voice=voice), nj=nj)


# --------------------------------------------------------------------------- Fluent Speech Commands


def fsc_intents() -> list[dict]:
    """The 31 FSC intents (action, object, location) with several phrasings each."""
    return json.loads(FSC_INTENTS_PATH.read_text(encoding="utf-8"))


def _fsc_speaker_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(16))


def fsc_plan(
    out: PathLike, *, num_speakers: int, utts_per_speaker: int, seed: int = 0,
    voices: Sequence[str] = ("kal", "ked", "slt"), espeak_fraction: float = 0.5,
) -> Plan:
    """The plan of :func:`synthesize_fsc`."""
    out = Path(out).absolute()
    voices = check_voices(voices)
    if num_speakers < 3:
        raise ConfigError(None, f"--num-speakers must be >= 3 (one per split), found {num_speakers}")
    if utts_per_speaker < 1:
        raise ConfigError(None, f"--utts-per-speaker must be >= 1, found {utts_per_speaker}")
    check_espeak_fraction(espeak_fraction)
    root = out / "fluent_speech_commands_dataset"
    config = {"layout": "fsc", "num_speakers": num_speakers, "utts_per_speaker": utts_per_speaker, "seed": seed,
              "voices": list(voices), "espeak_fraction": espeak_fraction, "generator": GENERATOR_VERSION}
    rng = random.Random(f"{seed}:fsc")
    ids: list[str] = []
    while len(ids) < num_speakers:
        sid = _fsc_speaker_id(rng)
        if sid not in ids:
            ids.append(sid)
    speakers = make_speakers(ids, voices, rng, espeak_fraction)
    order = list(range(num_speakers))
    rng.shuffle(order)
    n_held = max(1, round(0.15 * num_speakers))
    split_of = {}
    for rank, idx in enumerate(order):
        split_of[ids[idx]] = "test" if rank < n_held else "valid" if rank < 2 * n_held else "train"
    intents = fsc_intents()
    utts: list[PlannedUtt] = []
    rows: dict[str, list[tuple[str, list[str]]]] = {"train": [], "valid": [], "test": []}
    for spk in speakers:
        for _ in range(utts_per_speaker):
            intent = rng.choice(intents)
            text = rng.choice(intent["phrasings"])
            rel = f"wavs/speakers/{spk.id}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.wav"
            utts.append(PlannedUtt(f"{spk.id}-{Path(rel).stem}", text, spk, str(root / rel), SAMPLE_RATE))
            rows[split_of[spk.id]].append(
                (utts[-1].id, [rel, spk.id, text, intent["action"], intent["object"], intent["location"]]))

    def write_files(made: list[PlannedUtt]) -> None:
        """``data/{train,valid,test}_data.csv`` with pandas' index column, as the real corpus has."""
        ids = {u.id for u in made}
        for split, split_rows in rows.items():
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
            for i, row in enumerate(row for utt_id, row in split_rows if utt_id in ids):
                writer.writerow([i, *row])
            atomic_write_text(root / "data" / f"{split}_data.csv", buf.getvalue())

    options = {"layout": "fsc", "out": str(out), "num_speakers": str(num_speakers),
               "utts_per_speaker": str(utts_per_speaker), "seed": str(seed), "voices": ",".join(voices),
               "espeak_fraction": repr(float(espeak_fraction))}
    return Plan("fsc", out, root, config, options, utts, speakers, write_files)


def synthesize_fsc(
    out: PathLike, *, num_speakers: int, utts_per_speaker: int, seed: int = 0, nj: int = 1,
    voices: Sequence[str] = ("kal", "ked", "slt"), espeak_fraction: float = 0.5,
) -> Path:
    """A Fluent-Speech-Commands-shaped corpus ``OUT/fluent_speech_commands_dataset`` (16 kHz wavs).

    Speakers are Festival voices with prosody variants and (``espeak_fraction`` of them)
    espeak-ng voice variants; train/valid/test are split by speaker (about 70/15/15, at
    least one speaker each). Returns the corpus root.
    """
    return synthesize(fsc_plan(out, num_speakers=num_speakers, utts_per_speaker=utts_per_speaker, seed=seed,
                               voices=voices, espeak_fraction=espeak_fraction), nj=nj)


# --------------------------------------------------------------------------- ZeroSpeech 2021 probes

ZR2021_VOICES = ("kal", "slt")
_FILENAME_CHARS = string.ascii_lowercase + string.digits


def zr2021_plan(out: PathLike, num_pairs: int, *, seed: int = 0, voices: Sequence[str] = ZR2021_VOICES) -> Plan:
    """The plan of :func:`synthesize_zr2021`."""
    out = Path(out).absolute()
    voices = check_voices(voices)
    if num_pairs < 1:
        raise ConfigError(None, f"--num-pairs must be >= 1, found {num_pairs}")
    root = out / "zerospeech2021"
    config = {"layout": "zr2021", "num_pairs": int(num_pairs), "seed": seed, "voices": list(voices),
              "generator": GENERATOR_VERSION, "espeak_ng": Espeak(LANGUAGE, workers=1).version}
    names = random.Random(f"{seed}:zr2021:filenames")
    prosody = random.Random(f"{seed}:zr2021:prosody")
    used: set[str] = set()

    def filename() -> str:
        while True:
            name = "".join(names.choice(_FILENAME_CHARS) for _ in range(12))
            if name not in used:
                used.add(name)
                return name

    utts: list[PlannedUtt] = []
    speakers: list[Speaker] = []
    # per task: (filenames of a pair, gold row by filename), in gold.csv order
    rows: dict[str, list[tuple[tuple[str, ...], dict[str, dict[str, str]]]]] = {"lexical": [], "syntactic": []}

    def add_pair(task: str, pair_id: str, voice: str, members: list[tuple[str, dict[str, str]]]) -> None:
        spk = festival_speaker(f"{task}{pair_id}-{voice}", voice, prosody)  # one speaker: same prosody for both
        speakers.append(spk)
        names.shuffle(members)  # the correct member is not always first
        gold = {}
        for text, row in members:
            name = filename()
            utts.append(PlannedUtt(name, text, spk, str(root / task / "dev" / f"{name}.wav"), SAMPLE_RATE))
            gold[name] = {"id": pair_id, "filename": name, "voice": voice, **row}
        rows[task].append((tuple(gold), gold))

    for p in lexical_pairs(num_pairs, seed):
        for voice in voices:
            add_pair("lexical", p.id, voice, [
                (p.word, {"word": p.word, "phones": " ".join(p.word_phones), "length": str(len(p.word_phones)),
                          "frequency": str(p.frequency), "correct": "1"}),
                (p.nonword, {"word": p.nonword, "phones": " ".join(p.nonword_phones),
                             "length": str(len(p.nonword_phones)), "frequency": str(p.frequency), "correct": "0"}),
            ])
    for p in syntactic_pairs(num_pairs, seed):
        for voice in voices:
            add_pair("syntactic", p.id, voice, [
                (text, {"type": p.type, "subtype": p.subtype, "correct": correct, "transcription": text})
                for text, correct in ((p.grammatical, "1"), (p.ungrammatical, "0"))
            ])

    def write_files(made: list[PlannedUtt]) -> None:
        """``<task>/dev/gold.csv`` with the official columns, for the pairs whose two files were made."""
        ids = {u.id for u in made}
        for task, columns in GOLD_COLUMNS.items():
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for members, gold in rows[task]:
                if all(m in ids for m in members):
                    writer.writerows(gold[m] for m in members)
            atomic_write_text(root / task / "dev" / "gold.csv", buf.getvalue())

    options = {"layout": "zr2021", "out": str(out), "num_pairs": str(num_pairs), "seed": str(seed),
               "voices": ",".join(voices)}
    return Plan("zr2021", out, root, config, options, utts, speakers, write_files)


def synthesize_zr2021(out: PathLike, num_pairs: int, *, seed: int = 0, nj: int = 1,
                      voices: Sequence[str] = ZR2021_VOICES) -> Path:
    """Synthetic sWUGGY/sBLIMP probes in the ZeroSpeech 2021 layout ``OUT/zerospeech2021``.

    ``{lexical,syntactic}/dev/<filename>.wav`` (16 kHz) and ``gold.csv`` with the official
    columns: ``num_pairs`` pairs per task (:mod:`speechunits.data.synth.probes`), each spoken
    by every voice, both members of a pair by the same speaker (voice and prosody). Filenames
    are seeded random strings. Returns the ``OUT/zerospeech2021`` path.
    """
    return synthesize(zr2021_plan(out, num_pairs, seed=seed, voices=voices), nj=nj)
