"""Write LibriSpeech-, LJSpeech- and FSC-shaped synthetic corpora (plus TextGrid alignments).

Each ``synthesize_*`` function first builds a deterministic *plan* (utterance ids, texts,
speakers, output paths) from the seed and sizes alone, then synthesizes the utterances
whose audio (and alignment) do not exist yet, in ``nj`` worker processes (one festival
process per chunk of utterances), then writes the transcript/metadata files and finally
a completion record ``OUT/.synth/<layout>/provenance.json`` holding the config hash. A
rerun after a kill resumes; a rerun of a complete corpus with the same config returns at
once. Every file is written atomically. Audio depends only on each utterance's own
settings, so output is identical for any ``nj``.

The worker pool is its own, not the sharded-job runner of :mod:`speechunits.jobs`, and it
uses nothing from that module, for two reasons. The floors forbid it: ``jobs.py`` merges
unit sets, so it stands above ``units/`` (and ``train/``), while this generator is part of
``data/``, below them (``tests/test_layering.py``). And little of the runner fits: a
synthetic utterance is finished when its audio (and alignment) file exists, which is a finer
resume than shard records; there is no unit set to merge and no ``bad_utts.txt`` (a failing
festival run is an error, not a skipped utterance); and a festival process pays a start-up
cost per chunk, so chunks of up to ``MAX_CHUNK`` consecutive utterances handed out to
whichever worker is free (``imap_unordered``) balance better than round-robin shards of
whole subprocesses. What it shares with the runner is the contract: the same output for any
``nj``, resume after a kill, atomic files, and a completion record written last.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing as mp
import os
import random
import string
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from speechunits.audio import audio_info, resample, write_audio
from speechunits.data.alignments import write_textgrid
from speechunits.data.synth.espeak import espeak_binary, synthesize_espeak
from speechunits.data.synth.festival import FestivalRequest, check_festival, synthesize_batch
from speechunits.data.synth.text import librispeech_transcript, unique_sentences
from speechunits.data.synth.voices import FESTIVAL_VOICES, Speaker, festival_speaker, make_speakers
from speechunits.errors import ConfigError
from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.provenance import is_complete, write_provenance

PathLike = str | os.PathLike[str]

GENERATOR_VERSION = "speechunits.synth/1"
UTTS_PER_SPEAKER = 10
MAX_CHUNK = 32
LJ_SAMPLE_RATE = 22050
SAMPLE_RATE = 16000
FSC_INTENTS_PATH = Path(__file__).with_name("fsc_intents.json")


@dataclass(frozen=True)
class UttJob:
    """One utterance to produce: text, speaker and where its audio/alignment go."""

    id: str
    text: str
    speaker: Speaker
    audio: str
    sample_rate: int
    alignment: str | None = None

    def done(self) -> bool:
        return Path(self.audio).is_file() and (self.alignment is None or Path(self.alignment).is_file())


@dataclass
class RunStats:
    """What a run synthesized: counts, audio seconds and wall time."""

    planned: int = 0
    synthesized: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def utts_per_second(self) -> float:
        return self.synthesized / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0


LAST_RUN = RunStats()
"""Stats of the most recent synthesize_* call in this process (for benchmarks/reports)."""


# --------------------------------------------------------------------------- workers


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _write_outputs(job: UttJob, wav, sr: int, tiers=None, last_end: float = 0.0) -> float:
    """Resample, write audio, then the alignment (so 'done' means both exist); returns seconds."""
    wav = resample(wav, sr, job.sample_rate)
    write_audio(job.audio, wav, job.sample_rate)
    duration = len(wav) / job.sample_rate
    if job.alignment is not None and tiers is not None:
        write_textgrid(job.alignment, tiers, xmax=max(duration, last_end))
    return duration


def run_chunk(chunk: Sequence[UttJob]) -> list[float]:
    """Synthesize a chunk: festival utterances in ONE festival process, espeak ones one by one."""
    durations: list[float] = []
    fest = [j for j in chunk if j.speaker.engine == "festival"]
    if fest:
        results = synthesize_batch([FestivalRequest(f"u{i:05d}", j.text, j.speaker) for i, j in enumerate(fest)])
        for job, res in zip(fest, results):
            durations.append(_write_outputs(job, res.wav, res.sample_rate, res.tiers(), res.phones[-1].end))
    for job in chunk:
        if job.speaker.engine == "espeak":
            wav, sr = synthesize_espeak(job.text, job.speaker)
            durations.append(_write_outputs(job, wav, sr))
    return durations


def _chunks(jobs: Sequence[UttJob], nj: int) -> list[list[UttJob]]:
    """Contiguous chunks: one per job when few, else about two per worker, at most MAX_CHUNK each."""
    size = max(1, min(MAX_CHUNK, math.ceil(len(jobs) / (nj if nj == 1 else 2 * nj))))
    return [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]


def run_jobs(jobs: Sequence[UttJob], nj: int = 1, desc: str = "synth") -> RunStats:
    """Synthesize the jobs not done yet with ``nj`` processes; tqdm bar over utterances."""
    if nj < 1:
        raise ConfigError(None, f"--nj must be >= 1, found {nj}")
    todo = [j for j in jobs if not j.done()]
    stats = RunStats(planned=len(jobs))
    start = time.perf_counter()
    chunks = _chunks(todo, nj)
    with tqdm(total=len(todo), desc=desc, unit="utt", file=sys.stderr, disable=not todo) as bar:
        if nj == 1 or len(chunks) <= 1:
            results: Iterable[list[float]] = map(run_chunk, chunks)
            for durs in results:
                stats.synthesized += len(durs)
                stats.audio_seconds += sum(durs)
                bar.update(len(durs))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(nj, len(chunks)), initializer=_init_worker) as pool:
                for durs in pool.imap_unordered(run_chunk, chunks):
                    stats.synthesized += len(durs)
                    stats.audio_seconds += sum(durs)
                    bar.update(len(durs))
    stats.wall_seconds = time.perf_counter() - start
    if stats.synthesized:
        print(
            f"{desc}: synthesized {stats.synthesized} utterances ({stats.audio_seconds:.1f} s of audio) in "
            f"{stats.wall_seconds:.1f} s: {stats.utts_per_second:.2f} utt/s, real-time factor "
            f"{stats.real_time_factor:.4f} (nj={nj})",
            file=sys.stderr,
        )
    global LAST_RUN
    LAST_RUN = stats
    return stats


# --------------------------------------------------------------------------- helpers


def _check_tools(speakers: Iterable[Speaker]) -> None:
    speakers = list(speakers)
    voices = sorted({s.voice for s in speakers if s.engine == "festival"})
    if voices:
        check_festival(voices)
    if any(s.engine == "espeak" for s in speakers):
        espeak_binary()


def _marker(out: Path, layout: str) -> Path:
    return out / ".synth" / layout


def _claim(out: Path, layout: str, config: Mapping[str, object]) -> None:
    """Record which config this output directory is being generated for.

    Resuming relies on "files that exist are finished utterances of *this* plan"; a
    directory started (or finished) under another config would mix stale utterances in, so
    it is refused instead of silently reused.
    """
    plan = _marker(out, layout) / "plan.json"
    wanted = json.loads(json.dumps(config, sort_keys=True))
    if plan.is_file():
        try:
            found = json.loads(plan.read_text(encoding="utf-8"))
        except ValueError:
            found = None
        if found != wanted:
            raise ConfigError(
                out, f"already holds a {layout} corpus generated with a different config ({found}); "
                     f"requested {wanted}. Use another --out or delete {out} first",
            )
        return
    atomic_write_json(plan, wanted)


def _finish(
    out: Path, layout: str, config: Mapping[str, object], speakers: Sequence[Speaker], jobs: Sequence[UttJob]
) -> None:
    """Record speakers, the spoken text of every utterance, then the completion record (last)."""
    marker = _marker(out, layout)
    unique = {s.id: s for s in speakers}
    atomic_write_json(marker / "speakers.json", [s.to_dict() for s in unique.values()])
    atomic_write_json(marker / "utterances.json", {j.id: {"text": j.text, "speaker": j.speaker.to_dict()} for j in jobs})
    write_provenance(marker, config)


def _distinct_ints(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    if n > hi - lo:
        raise ConfigError(None, f"cannot draw {n} distinct ids from [{lo}, {hi})")
    return rng.sample(range(lo, hi), n)


def _check_voices(voices: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in voices if v not in FESTIVAL_VOICES]
    if unknown or not voices:
        raise ConfigError(None, f"unknown or no Festival voice(s) {list(voices)}; choose from {sorted(FESTIVAL_VOICES)}")
    return tuple(voices)


# --------------------------------------------------------------------------- LibriSpeech


def synthesize_librispeech(
    out: PathLike, splits: Mapping[str, int], *, seed: int = 0, nj: int = 1, voices: Sequence[str] = ("kal", "ked", "slt")
) -> Path:
    """A LibriSpeech-shaped corpus ``OUT/LibriSpeech/<split>/...`` with ``OUT/alignments/<split>/...`` TextGrids.

    ``splits`` maps split names to utterance counts. Splits have disjoint sentences and
    speakers (about ``UTTS_PER_SPEAKER`` utterances each, 1-2 chapters per speaker).
    Returns the ``OUT/LibriSpeech`` path.
    """
    out = Path(out).absolute()
    voices = _check_voices(voices)
    if not splits or any(int(n) < 1 for n in splits.values()):
        raise ConfigError(None, f"every split needs at least one utterance, found {dict(splits)}")
    root = out / "LibriSpeech"
    config = {"layout": "librispeech", "splits": {k: int(v) for k, v in splits.items()}, "seed": seed,
              "voices": list(voices), "generator": GENERATOR_VERSION}
    if is_complete(_marker(out, "librispeech"), config):
        return root
    names = sorted(splits)
    n_spk = {s: max(1, min(splits[s], math.ceil(splits[s] / UTTS_PER_SPEAKER))) for s in names}
    id_rng = random.Random(f"{seed}:librispeech:ids")
    spk_ids = iter(_distinct_ints(id_rng, sum(n_spk.values()), 100, 10000))
    chap_ids = iter(_distinct_ints(id_rng, 2 * sum(n_spk.values()), 1000, 200000))
    used: set[str] = set()
    jobs: list[UttJob] = []
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
            jobs.append(UttJob(
                utt_id, sent.normalized, spk,
                str(root / split / spk.id / chap / f"{utt_id}.flac"), SAMPLE_RATE,
                str(out / "alignments" / split / spk.id / chap / f"{utt_id}.TextGrid"),
            ))
    _check_tools(speakers)
    _claim(out, "librispeech", config)
    run_jobs(jobs, nj, desc="synth librispeech")
    for (split, spk, chap), utts in sorted(chapters.items()):
        lines = "".join(f"{uid} {text}\n" for uid, text in utts)
        atomic_write_text(root / split / spk / chap / f"{spk}-{chap}.trans.txt", lines)
    _write_speakers_txt(root, jobs, speakers, split_of)
    _finish(out, "librispeech", config, speakers, jobs)
    return root


def _write_speakers_txt(root: Path, jobs: Sequence[UttJob], speakers: Sequence[Speaker], split_of: Mapping[str, str]) -> None:
    minutes: dict[str, float] = defaultdict(float)
    for job in jobs:
        minutes[job.speaker.id] += audio_info(job.audio).duration / 60
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


def synthesize_ljspeech(out: PathLike, num_utts: int, *, seed: int = 0, nj: int = 1, voice: str = "slt") -> Path:
    """An LJSpeech-shaped corpus ``OUT/LJSpeech-1.1`` (22050 Hz wavs, one voice, per-clip prosody).

    ``metadata.csv`` holds ``id|raw text|normalized text`` (raw texts may contain digits
    that Festival reads out). Alignments go to ``OUT/alignments/ljspeech/<id>.TextGrid``.
    Returns the ``OUT/LJSpeech-1.1`` path.
    """
    out = Path(out).absolute()
    _check_voices([voice])
    if num_utts < 1:
        raise ConfigError(None, f"--num-utts must be >= 1, found {num_utts}")
    root = out / "LJSpeech-1.1"
    config = {"layout": "ljspeech", "num_utts": int(num_utts), "seed": seed, "voice": voice, "generator": GENERATOR_VERSION}
    if is_complete(_marker(out, "ljspeech"), config):
        return root
    rng = random.Random(f"{seed}:ljspeech")
    sentences = unique_sentences(num_utts, rng, set())
    jobs, rows, speakers = [], [], []
    for i, sent in enumerate(sentences):
        utt_id = f"LJ{1 + i // 100:03d}-{1 + i % 100:04d}"
        spk = festival_speaker("LJ", voice, rng)
        speakers.append(spk)
        rows.append(f"{utt_id}|{sent.raw}|{sent.normalized}\n")
        jobs.append(UttJob(utt_id, sent.raw, spk, str(root / "wavs" / f"{utt_id}.wav"), LJ_SAMPLE_RATE,
                           str(out / "alignments" / "ljspeech" / f"{utt_id}.TextGrid")))
    _check_tools(speakers[:1])
    _claim(out, "ljspeech", config)
    run_jobs(jobs, nj, desc="synth ljspeech")
    atomic_write_text(root / "metadata.csv", "".join(rows))
    _finish(out, "ljspeech", config, speakers, jobs)
    return root


# --------------------------------------------------------------------------- Fluent Speech Commands


def fsc_intents() -> list[dict]:
    """The 31 FSC intents (action, object, location) with several phrasings each."""
    return json.loads(FSC_INTENTS_PATH.read_text(encoding="utf-8"))


def _fsc_speaker_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(16))


def synthesize_fsc(
    out: PathLike, *, num_speakers: int, utts_per_speaker: int, seed: int = 0, nj: int = 1,
    voices: Sequence[str] = ("kal", "ked", "slt"), espeak_fraction: float = 0.5,
) -> Path:
    """A Fluent-Speech-Commands-shaped corpus ``OUT/fluent_speech_commands_dataset`` (16 kHz wavs).

    Speakers are Festival voices with prosody variants and (``espeak_fraction`` of them)
    espeak-ng voice variants; train/valid/test are split by speaker (about 70/15/15, at
    least one speaker each). Returns the corpus root.
    """
    out = Path(out).absolute()
    voices = _check_voices(voices)
    if num_speakers < 3:
        raise ConfigError(None, f"--num-speakers must be >= 3 (one per split), found {num_speakers}")
    if utts_per_speaker < 1:
        raise ConfigError(None, f"--utts-per-speaker must be >= 1, found {utts_per_speaker}")
    root = out / "fluent_speech_commands_dataset"
    config = {"layout": "fsc", "num_speakers": num_speakers, "utts_per_speaker": utts_per_speaker, "seed": seed,
              "voices": list(voices), "espeak_fraction": espeak_fraction, "generator": GENERATOR_VERSION}
    if is_complete(_marker(out, "fsc"), config):
        return root
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
    jobs: list[UttJob] = []
    rows: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
    for spk in speakers:
        for _ in range(utts_per_speaker):
            intent = rng.choice(intents)
            text = rng.choice(intent["phrasings"])
            rel = f"wavs/speakers/{spk.id}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.wav"
            jobs.append(UttJob(f"{spk.id}-{Path(rel).stem}", text, spk, str(root / rel), SAMPLE_RATE))
            rows[split_of[spk.id]].append([rel, spk.id, text, intent["action"], intent["object"], intent["location"]])
    _check_tools(speakers)
    _claim(out, "fsc", config)
    run_jobs(jobs, nj, desc="synth fsc")
    for split, split_rows in rows.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
        for i, row in enumerate(split_rows):
            writer.writerow([i, *row])
        atomic_write_text(root / "data" / f"{split}_data.csv", buf.getvalue())
    _finish(out, "fsc", config, speakers, jobs)
    return root
