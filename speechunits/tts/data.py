"""The TTS corpus in memory, and length-bucketed, shuffled batches.

:class:`TTSCorpus` reads a data directory (``speechunits prepare-data``): transcripts,
audio, speakers. Symbols come from a ``speechunits phonemize`` file when one is given (the
recipe's phoneme stage), else the front end runs here. Every log-mel is computed once at
start-up and kept in memory (a corpus the size of LJSpeech is about 1.6 GB of float16 mels;
the tiny synthetic one a few MB). An utterance without a transcript, with unusable audio or
with symbols outside the model's table is skipped and reported, never fatal.

:class:`BucketBatches` sorts utterances by a noisy length each epoch (lengths times a factor
in [1, 1 + jitter), from a generator seeded by ``(seed, epoch)``), cuts them into batches of
``batch_size`` utterances (fewer when ``max_frames`` would be exceeded), shuffles the
batches, and gives rank ``k`` of ``N`` every N-th batch (the batch count is cut to a multiple
of N so every rank steps equally). Bucketing keeps padding (wasted decoder steps) small;
the noise and the shuffle keep batches from being the same every epoch.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from speechunits.data.batching import pack_by_frames
from speechunits.data.jsonl import load_manifest
from speechunits.data.utterance import Utterance
from speechunits.data.waves import load_waves, report_bad
from speechunits.errors import ConfigError, ManifestError
from speechunits.features.mel import LogMel, MelConfig
from speechunits.text import SymbolTable, TextFrontend, meta_path, read_symbols
from speechunits.train.distributed import DistInfo


@dataclass
class TTSItem:
    """One training utterance: symbol ids, log-mel ``[T, n_mels]`` (not normalised), speaker."""

    id: str
    ids: list[int]
    log_mel: Tensor
    speaker: str | None
    text: str

    @property
    def frames(self) -> int:
        return int(self.log_mel.shape[0])


def read_corpus(data: str | Path) -> list[Utterance]:
    """The utterances of a data directory or manifest (those without a transcript too: they are
    skipped and reported, not fatal); ManifestError when there are none."""
    utts = load_manifest(data, require_text=False)
    if not utts:
        raise ManifestError(data, "no utterances")
    return utts


def corpus_symbols(utts: Sequence[Utterance], frontend: TextFrontend,
                   symbols_file: str | Path | None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Symbols by id (from ``symbols_file`` or the front end), and the reason per skipped id."""
    bad: dict[str, str] = {}
    texts = {}
    for u in utts:
        if u.text is None or not u.text.strip():
            bad[u.id] = "no transcript"
        else:
            texts[u.id] = u.text
    if symbols_file is not None:
        check_symbols_frontend(symbols_file, frontend)
        stored = read_symbols(symbols_file)
        out = {}
        for uid in texts:
            if uid in stored:
                out[uid] = stored[uid]
            else:
                bad[uid] = f"not in the symbols file {symbols_file}"
        return out, bad
    ids = sorted(texts)
    seqs = frontend.batch([texts[i] for i in ids], ids=ids, progress=True)
    return dict(zip(ids, seqs)), bad


def check_symbols_frontend(symbols_file: str | Path, frontend: TextFrontend) -> None:
    """ConfigError when ``symbols_file`` was made by another front end than the one the model will
    use at inference (training inputs and synthesis inputs would differ)."""
    meta = meta_path(symbols_file)
    if not meta.is_file():
        return
    made = json.loads(meta.read_text(encoding="utf-8")).get("frontend") or {}
    mine = frontend.to_dict()
    for key in ("kind", "language"):
        if key in made and made[key] != mine.get(key):
            raise ConfigError(symbols_file, f"made with front end {key}={made[key]!r}, but the model's front end has "
                                            f"{key}={mine.get(key)!r} (task.frontend.{key}): the symbols the model is "
                                            "trained on would differ from those it reads at synthesis")


def log_mels(waves: dict[str, np.ndarray], cfg: MelConfig, progress: bool) -> dict[str, Tensor]:
    """Log-mel ``[T, n_mels]`` float32 per id."""
    mel = LogMel(cfg)
    out = {}
    for uid, wave in tqdm(waves.items(), desc="log-mels", unit="utt", file=sys.stderr, disable=not progress or None,
                          leave=False):
        out[uid] = mel(torch.from_numpy(wave)).T.contiguous()
    return out


class TTSCorpus:
    """A TTS training or validation set in memory (see the module docstring)."""

    def __init__(self, data: str | Path, mel: MelConfig, frontend: TextFrontend, *, symbols_file: str | Path | None = None,
                 table: SymbolTable | None = None, max_utts: int | None = None, max_seconds: float | None = None,
                 quiet: bool = False) -> None:
        utts = read_corpus(data)
        if max_utts is not None:
            utts = utts[: int(max_utts)]
        symbols, bad = corpus_symbols(utts, frontend, symbols_file)
        self.table = table if table is not None else SymbolTable.build(list(symbols.values()))
        encoded: dict[str, list[int]] = {}
        for uid, seq in symbols.items():
            try:
                encoded[uid] = self.table.encode(seq)
            except ConfigError as err:
                bad[uid] = str(err)
        usable = [u for u in utts if u.id in encoded]
        waves, bad_audio = load_waves(usable, mel.sample_rate, desc=f"load {data}", progress=not quiet)
        bad.update(bad_audio)
        if max_seconds is not None:
            for uid in [k for k, w in waves.items() if len(w) > max_seconds * mel.sample_rate]:
                bad[uid] = f"longer than task.max_seconds={max_seconds}"
                del waves[uid]
        mels = log_mels(waves, mel, progress=not quiet)
        self.items = [TTSItem(u.id, encoded[u.id], mels[u.id], u.speaker, u.text or "") for u in usable if u.id in mels]
        self.bad = bad
        if not quiet:
            report_bad(bad, f"tts corpus {data}")
        if not self.items:
            raise ManifestError(data, "no usable utterance (every one lacked a transcript or readable audio)")

    def __len__(self) -> int:
        return len(self.items)

    def speakers(self) -> list[str]:
        return sorted({i.speaker for i in self.items if i.speaker is not None})

    def mel_statistics(self) -> tuple[Tensor, Tensor]:
        """Per-bin mean and standard deviation of the log-mels over all frames."""
        total = torch.cat([i.log_mel for i in self.items]).double()
        return total.mean(0).float(), total.std(0).clamp_min(1e-3).float()


def collate(items: Sequence[TTSItem], reduction: int, mean: Tensor, std: Tensor, silence: Tensor,
            speakers: dict[str, int] | None) -> dict[str, object]:
    """A padded batch; mels are normalised and padded with the normalised silence to a multiple of ``r``."""
    n = max(len(i.ids) for i in items)
    t = max(i.frames for i in items)
    t = int(math.ceil(t / reduction) * reduction)
    text = torch.zeros(len(items), n, dtype=torch.long)
    mel = silence.view(1, 1, -1).repeat(len(items), t, 1)
    for k, item in enumerate(items):
        text[k, : len(item.ids)] = torch.tensor(item.ids)
        mel[k, : item.frames] = (item.log_mel - mean) / std
    batch: dict[str, object] = {
        "text": text,
        "text_lengths": torch.tensor([len(i.ids) for i in items]),
        "mel": mel,
        "mel_lengths": torch.tensor([i.frames for i in items]),
        "ids": [i.id for i in items],
    }
    if speakers:
        batch["speaker"] = torch.tensor([speakers.get(i.speaker or "", 0) for i in items])
    return batch


class BucketBatches:
    """Epoch -> this rank's batches of item indices (see the module docstring)."""

    def __init__(self, frames: Sequence[int], batch_size: int, max_frames: int | None, dist: DistInfo, seed: int,
                 jitter: float = 0.1) -> None:
        if batch_size < 1:
            raise ConfigError(None, f"task.batch_size={batch_size}: expected >= 1")
        self.frames = list(frames)
        self.batch_size, self.max_frames = int(batch_size), max_frames
        self.dist, self.seed, self.jitter = dist, int(seed), float(jitter)

    def epoch(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        keys = [f * (1.0 + self.jitter * rng.random()) for f in self.frames]
        order = sorted(range(len(self.frames)), key=lambda i: keys[i])
        batches = pack_by_frames(order, self.frames, self.max_frames or sys.maxsize, self.batch_size)
        rng.shuffle(batches)
        world = self.dist.world_size
        usable = len(batches) // world * world
        if usable == 0:
            raise ConfigError(None, f"{len(batches)} batch(es) cannot be split over {world} ranks: lower task.batch_size")
        return batches[self.dist.rank:usable:world]

    def __call__(self, epoch: int) -> Iterator[list[int]]:
        return iter(self.epoch(epoch))


__all__ = ["BucketBatches", "TTSCorpus", "TTSItem", "collate", "corpus_symbols", "log_mels", "read_corpus"]
