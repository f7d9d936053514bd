"""The vocoder's training data: utterances, random crops on the unit grid, batches.

A corpus is either a **unit set** (``input: frame_units`` or ``syllables``; audio resolved
with :meth:`UnitSetMeta.resolve_audio`, embeddings from its ``embeddings/``) or a **data
dir** (``manifest.jsonl`` or a Kaldi dir; ``input: mel``, the mel frames are computed from
the waveform crop by the task). Each training example is a crop of ``segment_samples``
samples that starts on a unit-frame boundary (a mel-frame boundary for mel input), with its
conditioning: unit ids per unit frame (gaps are the silence id, via
:func:`~speechunits.units.convert.segments_to_frame_grid`), segment embeddings spread over
their frames, the stored F0 on the mel frame grid, the speaker index. Crops of utterances
shorter than a segment are padded with silence (zeros, the silence id).

Batches depend only on ``(seed, epoch)``: the order is a seeded permutation, each example's
crop start is drawn from a generator seeded by ``(seed, epoch, position)``, and every DDP
rank takes its slice of each global batch (:func:`speechunits.train.toy.rank_batches`), so
the ranks together see exactly the single-process batches.

Audio is cached in memory when ``cache_audio`` is set (small corpora), else read per batch.
An utterance whose record or audio is unusable is skipped and counted; the skipped ids and
reasons are reported once (``skipped``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.audio import load_audio
from speechunits.data.jsonl import load_manifest, read_jsonl_manifest
from speechunits.errors import ConfigError, SpeechUnitsError, UnitFormatError
from speechunits.features.f0 import f0_to_frames, log_f0_and_voicing
from speechunits.features.f0_store import F0Store
from speechunits.train.distributed import DistInfo
from speechunits.train.toy import rank_batches
from speechunits.units.convert import segments_to_frame_grid
from speechunits.units.embeddings import EmbeddingStore
from speechunits.units.export import runs_with_silence
from speechunits.units.meta import UnitSetMeta, read_meta
from speechunits.units.reader import read_units
from speechunits.vocoder.config import VocoderConfig


@dataclass
class TrainUtt:
    """One usable utterance: where its audio is, and its unit-rate conditioning."""

    id: str
    audio: Path
    speaker: str | None
    num_frames: int
    """Unit frames (mel frames for mel input) of the conditioning grid (the audio is cut to it)."""
    frame_ids: np.ndarray | None = None
    """[num_frames] int64 ids per unit frame, gaps = silence (id inputs)."""
    token_of_frame: np.ndarray | None = None
    """[num_frames] int64 token index per unit frame, -1 in gaps (embedding input)."""
    embeddings: np.ndarray | None = None
    """[N, D] float32 segment embeddings (embedding input)."""
    run_ids: np.ndarray | None = None
    """Deduplicated ids with silence tokens in gaps, and their durations (duration predictor)."""
    run_durations: np.ndarray | None = None


def data_manifest(path: str | Path) -> list:
    """The utterances of a data dir (``manifest.jsonl`` when present) or of a manifest file."""
    path = Path(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        return read_jsonl_manifest(path / "manifest.jsonl")
    return load_manifest(path, require_text=False)


def check_unit_set(meta: UnitSetMeta, cfg: VocoderConfig, where: Path) -> None:
    """ConfigError unless the unit set fits the model: frame grid, vocabulary, silence, embeddings."""
    if cfg.input == "mel":
        raise ConfigError(where, "a mel vocoder reads a data dir (--data / task.train=DATA_DIR), not a unit set")
    if meta.sample_rate != cfg.sample_rate or meta.hop != cfg.unit_hop:
        raise ConfigError(where, f"unit frame grid {meta.frame_rate} differs from the model's "
                                 f"{cfg.sample_rate}/{cfg.unit_hop} (mel.sample_rate/unit_hop)")
    if cfg.uses_ids:
        if meta.vocab_size != cfg.vocab_size:
            raise ConfigError(where, f"vocab_size {meta.vocab_size} differs from the model's {cfg.vocab_size}")
        if meta.special_ids.get("silence") != cfg.silence_id:
            raise ConfigError(where, f"silence id {meta.special_ids.get('silence')} differs from the model's "
                                     f"{cfg.silence_id}")
    elif meta.embedding_dim != cfg.embedding_dim:
        raise ConfigError(where, f"embedding_dim {meta.embedding_dim} differs from the model's {cfg.embedding_dim}")


def unit_config_fields(unit_dir: str | Path, model: Mapping[str, Any]) -> dict[str, Any]:
    """The model config keys a unit set decides (unit_hop, vocab_size, silence_id, embedding_dim),
    filled in where ``model`` leaves them out."""
    meta = read_meta(unit_dir)
    out = dict(model)
    out.setdefault("unit_hop", meta.hop)
    source = out.get("syllable_source", "cluster")
    if out.get("input") == "frame_units" or (out.get("input") == "syllables" and source == "cluster"):
        out.setdefault("vocab_size", meta.vocab_size)
        out.setdefault("silence_id", meta.special_ids.get("silence"))
    if out.get("input") == "syllables" and source == "embedding":
        out.setdefault("embedding_dim", meta.embedding_dim)
    return out


def token_frames(rec: Any, meta: UnitSetMeta, cfg: VocoderConfig, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids per unit frame with silence in gaps, token index per unit frame with -1 in gaps)."""
    n = len(rec.starts)
    index = segments_to_frame_grid(rec.starts, rec.ends, list(range(n)), num_frames, -1)
    ids = None
    if rec.units is not None and cfg.silence_id is not None:
        units = np.asarray(rec.units, dtype=np.int64)
        ids = np.where(index >= 0, units[np.maximum(index, 0)] if n else cfg.silence_id, cfg.silence_id)
    return ids, index


class VocoderCorpus:
    """The usable utterances of one corpus, with audio access (cached or per call)."""

    def __init__(self, path: str | Path, cfg: VocoderConfig, *, f0: str | Path | None = None,
                 speakers: dict[str, int] | None = None, cache_audio: bool = True,
                 max_utts: int | None = None, quiet: bool = False) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.cache_audio = cache_audio
        self.skipped: dict[str, str] = {}
        self._audio: dict[str, np.ndarray] = {}
        self._reported = False
        self.quiet = quiet
        self.utts: list[TrainUtt] = self._read_units(max_utts) if cfg.input != "mel" else self._read_data(max_utts)
        self.f0 = F0Store(f0) if f0 else None
        if self.f0 is not None:
            for u in list(self.utts):
                if u.id not in self.f0:
                    self._skip(u, f"no F0 in {f0}")
        self.speakers = speakers if speakers is not None else {
            s: i for i, s in enumerate(sorted({u.speaker for u in self.utts if u.speaker is not None}))}
        if cache_audio:
            for u in list(self.utts):
                self.wave(u)
        self.report()
        if not self.utts:
            raise ConfigError(self.path, "no usable utterance for the vocoder (all skipped)")

    # ------------------------------------------------------------------ reading
    def _read_data(self, max_utts: int | None) -> list[TrainUtt]:
        hop = self.cfg.hop_length
        utts = []
        for utt in sorted(data_manifest(self.path), key=lambda u: u.id)[:max_utts]:
            n = utt.num_samples if utt.num_samples and utt.sample_rate == self.cfg.sample_rate else None
            utts.append(TrainUtt(id=utt.id, audio=Path(utt.audio), speaker=utt.speaker,
                                 num_frames=(n // hop) if n else -1))
        return utts

    def _read_units(self, max_utts: int | None) -> list[TrainUtt]:
        meta = read_meta(self.path)
        check_unit_set(meta, self.cfg, self.path / "meta.json")
        cfg = self.cfg
        store = None
        if cfg.input == "syllables" and cfg.syllable_source == "embedding":
            store = EmbeddingStore(self.path, meta.embedding_dim)
        utts = []
        for rec in read_units(self.path):
            if max_utts is not None and len(utts) >= max_utts:
                break
            u = TrainUtt(id=rec.id, audio=meta.resolve_audio(rec), speaker=rec.speaker, num_frames=0)
            try:
                grid = meta.audio_frames(rec.num_samples, rec.sample_rate)
                # whole unit frames of the audio: the crop never runs past the waveform
                u.num_frames = (rec.num_samples * cfg.sample_rate // rec.sample_rate) // cfg.unit_hop
                ids, index = token_frames(rec, meta, cfg, grid)
                u.frame_ids = None if ids is None else ids[: u.num_frames]
                if cfg.uses_ids and u.frame_ids is None:
                    raise UnitFormatError(self.path / "units.jsonl", f"utterance {rec.id!r} has no units")
                if store is not None:
                    u.token_of_frame = index[: u.num_frames]
                    emb = np.asarray(store.get(rec.id), dtype=np.float32)
                    if emb.shape[0] != rec.num_tokens or not np.isfinite(emb).all():
                        raise UnitFormatError(store.index_path, f"utterance {rec.id!r}: bad embeddings "
                                                                f"(shape {emb.shape}, {rec.num_tokens} tokens)")
                    u.embeddings = emb
                if cfg.duration_predictor:
                    run_ids, run_durs = runs_with_silence(meta, rec)
                    u.run_ids = np.asarray(run_ids, dtype=np.int64)
                    u.run_durations = np.asarray(run_durs, dtype=np.int64)
            except SpeechUnitsError as err:
                self.skipped[rec.id] = str(err)
                continue
            if u.num_frames <= 0:
                self.skipped[rec.id] = "shorter than one unit frame"
                continue
            utts.append(u)
        return utts

    def _skip(self, u: TrainUtt, reason: str) -> None:
        self.skipped[u.id] = reason
        self.utts = [x for x in self.utts if x.id != u.id]
        self._reported = False

    def report(self) -> None:
        """Print the skipped utterances once (count, first few reasons)."""
        if self.skipped and not self._reported and not self.quiet:
            first = "; ".join(f"{k}: {v}" for k, v in list(sorted(self.skipped.items()))[:3])
            print(f"vocoder data {self.path}: skipped {len(self.skipped)} utterance(s) ({first})", file=sys.stderr)
        self._reported = True

    def wave(self, u: TrainUtt) -> np.ndarray | None:
        """The waveform at the model's rate, cut to ``num_frames`` frames; None (and skipped) if unusable."""
        if u.id in self._audio:
            return self._audio[u.id]
        try:
            wav = load_audio(u.audio, self.cfg.sample_rate)
        except SpeechUnitsError as err:
            self._skip(u, str(err))
            return None
        step = self.cfg.hop_length if self.cfg.input == "mel" else self.cfg.unit_hop
        if u.num_frames < 0:
            u.num_frames = len(wav) // step
        if u.num_frames <= 0:
            self._skip(u, f"{u.audio}: shorter than one frame")
            return None
        wav = wav[: u.num_frames * step]
        if len(wav) < u.num_frames * step:
            wav = np.pad(wav, (0, u.num_frames * step - len(wav)))
        if self.cache_audio:
            self._audio[u.id] = wav
        return wav

    def speaker_index(self, u: TrainUtt) -> int:
        return int(self.speakers.get(u.speaker, 0)) if u.speaker is not None else 0

    # ------------------------------------------------------------------ examples
    def example(self, u: TrainUtt, wav: np.ndarray, start: int | None, frames: int | None) -> dict[str, Tensor]:
        """Conditioning and waveform of unit frames ``[start, start + frames)`` (the whole utterance
        when ``frames`` is None), padded with silence past the end."""
        cfg = self.cfg
        step = cfg.hop_length if cfg.input == "mel" else cfg.unit_hop
        start = start or 0
        frames = u.num_frames - start if frames is None else frames
        stop = start + frames
        seg = wav[start * step: stop * step]
        seg = np.pad(seg, (0, frames * step - len(seg)))
        mel_frames = frames * step // cfg.hop_length
        out: dict[str, Tensor] = {"wave": torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32)),
                                  "lengths": torch.tensor(min(u.num_frames - start, frames) * step // cfg.hop_length)}
        if u.frame_ids is not None and cfg.uses_ids:
            ids = np.full(frames, cfg.silence_id, dtype=np.int64)
            part = u.frame_ids[start:stop]
            ids[: len(part)] = part
            out["unit_ids"] = torch.from_numpy(ids)
        if u.token_of_frame is not None:
            index = np.full(frames, -1, dtype=np.int64)
            part = u.token_of_frame[start:stop]
            index[: len(part)] = part
            vec = np.zeros((frames, u.embeddings.shape[1]), dtype=np.float32)
            if len(u.embeddings):
                vec[index >= 0] = u.embeddings[index[index >= 0]]
            out["unit_vectors"] = torch.from_numpy(vec)
            out["unit_silence"] = torch.from_numpy(index < 0)
        if self.f0 is not None:
            log_f0, voiced = self.f0_frames(u, start * step // cfg.hop_length, mel_frames)
            out["log_f0"], out["voiced"] = torch.from_numpy(log_f0), torch.from_numpy(voiced)
        if cfg.num_speakers:
            out["speaker"] = torch.tensor(self.speaker_index(u))
        return out

    def f0_frames(self, u: TrainUtt, first: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised log-F0 and voicing on mel frames ``[first, first + frames)``."""
        store = self.f0
        total = u.num_frames * (self.cfg.unit_hop if self.cfg.input != "mel" else self.cfg.hop_length) // self.cfg.hop_length
        track = f0_to_frames(store.get(u.id), store.hop_seconds, total, self.cfg.hop_length / self.cfg.sample_rate)
        return normalise_f0(track[first: first + frames], store.log_f0_mean, store.log_f0_std, frames)


def normalise_f0(f0_hz: np.ndarray, mean: float, std: float, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(normalised log-F0, 0 where unvoiced; voicing), padded with unvoiced frames to ``frames``."""
    f0_hz = np.asarray(f0_hz, dtype=np.float32)
    if frames is not None and len(f0_hz) < frames:
        f0_hz = np.pad(f0_hz, (0, frames - len(f0_hz)))
    log_f0, voiced = log_f0_and_voicing(f0_hz)
    voiced = np.asarray(voiced, dtype=np.float32)
    if not math.isfinite(mean) or not math.isfinite(std):  # a store without voiced frames
        mean, std = 0.0, 1.0
    norm = np.where(voiced > 0, (np.asarray(log_f0) - mean) / max(std, 1e-5), 0.0).astype(np.float32)
    return norm, voiced


def stack_examples(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Examples of one crop size -> a batch dict (every key stacked on a new axis 0)."""
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def pad_runs(utts: list[TrainUtt]) -> dict[str, Tensor]:
    """The duration predictor's targets of the utterances: ids, durations, mask (padded)."""
    n = max(1, max(len(u.run_ids) for u in utts))
    ids = torch.zeros(len(utts), n, dtype=torch.long)
    durs = torch.zeros(len(utts), n, dtype=torch.long)
    mask = torch.zeros(len(utts), n, dtype=torch.bool)
    for i, u in enumerate(utts):
        k = len(u.run_ids)
        ids[i, :k] = torch.from_numpy(u.run_ids)
        durs[i, :k] = torch.from_numpy(u.run_durations)
        mask[i, :k] = True
    return {"dp_ids": ids, "dp_durations": durs, "dp_mask": mask}


class CropBatches:
    """Deterministic random-crop batches of a corpus for one rank of a run.

    An utterance found unusable while training (audio read per call, ``cache_audio=false``) is
    left out from the next epoch on. ``skipped_in`` (id -> the epoch it was found in) is task
    state, checkpointed, so a resumed run's epochs hold the utterances the uninterrupted run's do.
    """

    def __init__(self, corpus: VocoderCorpus, segment_samples: int, global_batch: int, dist: DistInfo,
                 seed: int) -> None:
        cfg = corpus.cfg
        step = cfg.hop_length if cfg.input == "mel" else cfg.unit_hop
        self.frames = segment_samples // step
        if self.frames <= 0:
            raise ConfigError(None, f"segment of {segment_samples} samples is shorter than one frame of {step}")
        if global_batch % dist.world_size:
            raise ConfigError(None, f"task.batch_size={global_batch} is not divisible by world_size={dist.world_size}")
        self.corpus, self.global_batch, self.dist, self.seed = corpus, global_batch, dist, seed
        self.utts = list(corpus.utts)  # the usable ones as the corpus was read
        self.skipped_in: dict[str, int] = {}

    def __call__(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        corpus = self.corpus
        # the list as of this epoch's start: skips found in this epoch or later apply from the next
        utts = [u for u in self.utts if self.skipped_in.get(u.id, epoch) >= epoch]
        n = len(utts)
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        repeats = max(1, math.ceil(self.global_batch / n))
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(repeats)])
        position = torch.arange(order.numel())
        for batch_pos in rank_batches(position, self.global_batch, self.dist):
            examples, chosen = [], []
            for p in batch_pos.tolist():
                k = int(order[p])
                wav = None
                for attempt in range(n):  # an unusable utterance: take the next one, deterministically
                    u = utts[(k + attempt) % n]
                    wav = corpus.wave(u)
                    if wav is not None:
                        break
                    self.skipped_in.setdefault(u.id, epoch)
                if wav is None:
                    raise ConfigError(corpus.path, "no usable utterance for the vocoder (all skipped)")
                rng = np.random.default_rng([self.seed, epoch, p])
                start = int(rng.integers(0, max(0, u.num_frames - self.frames) + 1))
                examples.append(corpus.example(u, wav, start, self.frames))
                chosen.append(u)
            corpus.report()
            batch = stack_examples(examples)
            if corpus.cfg.duration_predictor:
                batch.update(pad_runs(chosen))
            yield batch
