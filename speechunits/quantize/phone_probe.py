"""Phone information in frame features: k-means of each (system, layer), scored against reference phones.

A *system* is a name and a spec: ``mfcc`` or ``logmel`` (signal features on the 50 Hz grid,
:mod:`speechunits.features.frame_features`, reported as layer 0) or an encoder checkpoint
(every transformer layer ``1..num_layers``, from one run of
:meth:`~speechunits.encoders.model.SpeechEncoder.extract_features` per batch). For each
(system, layer):

1. the frames of the probe utterances (all of them, silence included) are clustered with
   :func:`speechunits.quantize.kmeans.kmeans` (squared Euclidean, ``k`` clusters, fixed seed);
2. every frame is assigned to its nearest centroid;
3. frames are labelled with the reference phone at the **centre of their receptive field**,
   ``t_i = (i * hop + window / 2) / sample_rate`` (12.5 ms + 20 ms x i for HuBERT): the
   phone interval ``[start, end)`` holding ``t_i``, stress digits removed
   (``AH1`` -> ``AH``); frames in silence (:data:`speechunits.data.alignments.SILENCE_LABELS`)
   or outside every interval are dropped;
4. phone purity, cluster purity and PNMI (:mod:`speechunits.eval.frame_purity`) are computed
   over the labelled frames.

The probe utterances are the first ``max_utts`` utterances (sorted by id) that have a
``<id>.TextGrid`` under the alignment directory (found recursively, as ``eval-boundaries``
finds them); the others are counted as missing.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from speechunits.data.alignments import Interval, is_silence, read_textgrid
from speechunits.data.utterance import Utterance
from speechunits.encoders.model import SpeechEncoder
from speechunits.errors import AlignmentError, CheckpointError, ConfigError
from speechunits.eval.frame_purity import FramePurity, frame_purity
from speechunits.eval.purity import normalize_syllable_label
from speechunits.features.frame_features import FEATURE_KINDS, FrameFeatureConfig, FrameFeatureExtractor
from speechunits.io_utils import index_files, sha256_path
from speechunits.quantize.frame_units_cli import LayerFeatures
from speechunits.quantize.kmeans import assign_chunked, kmeans

SIGNAL_LAYER = 0
"""The layer number signal features (mfcc, logmel) are reported under."""


# ------------------------------------------------------------------ systems
@dataclass(frozen=True)
class SystemSpec:
    """``NAME=SPEC`` of ``--system``: SPEC is ``mfcc``, ``logmel`` or an encoder checkpoint path."""

    name: str
    spec: str

    @property
    def signal(self) -> bool:
        return self.spec in FEATURE_KINDS


def parse_system(text: str) -> SystemSpec:
    """``NAME=SPEC`` (or a bare ``mfcc``/``logmel``, named after itself) -> SystemSpec; ConfigError otherwise."""
    name, sep, spec = text.partition("=")
    if not sep:
        if text in FEATURE_KINDS:
            return SystemSpec(text, text)
        raise ConfigError(None, f"--system {text!r}: expected NAME=SPEC with SPEC one of {list(FEATURE_KINDS)} or an "
                                "encoder checkpoint path (e.g. --system stage1=exp/sylber/stage1/model.pt)")
    name, spec = name.strip(), spec.strip()
    if not name or not spec:
        raise ConfigError(None, f"--system {text!r}: both NAME and SPEC must be non-empty")
    if spec not in FEATURE_KINDS and not Path(spec).exists():
        raise CheckpointError(Path(spec), f"--system {name}: not {' or '.join(FEATURE_KINDS)}, and no such "
                                          "checkpoint file or directory")
    return SystemSpec(name, spec)


def parse_systems(texts: Sequence[str]) -> list[SystemSpec]:
    """Every ``--system``, in order; names must be unique."""
    systems = [parse_system(t) for t in texts]
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(None, f"--system names must be unique; repeated: {dup}")
    if not systems:
        raise ConfigError(None, "give at least one --system NAME=SPEC")
    return systems


class StackedLayers(nn.Module):
    """An encoder whose ``forward`` gives all its transformer layers side by side: ``(B, T, L * D)``.

    It has the attributes :class:`~speechunits.encoders.batch.BatchEncoder` reads, so one
    batched pass yields every layer (split again with :meth:`split`).
    """

    def __init__(self, model: SpeechEncoder) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.num_layers = int(model.config.num_layers)

    @property
    def receptive_field(self) -> int:
        return self.model.receptive_field

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim * self.num_layers

    def forward(self, waveforms: torch.Tensor,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        layers, frames = self.model.extract_features(waveforms, lengths)
        return torch.cat(layers, dim=-1), frames

    def split(self, stacked: np.ndarray) -> list[np.ndarray]:
        """``(T, L * D)`` -> L arrays ``(T, D)`` (layer 1 first)."""
        return np.split(stacked, self.num_layers, axis=1)


@dataclass
class FrameSource:
    """A loaded system: the module that makes its frames, its layers and its frame grid."""

    system: SystemSpec
    module: nn.Module
    layers: list[int]
    window: int
    hop: int
    sample_rate: int
    info: dict[str, Any]

    def split(self, feats: np.ndarray) -> list[np.ndarray]:
        """One utterance's frames -> one ``(T, D)`` array per layer of :attr:`layers`."""
        return self.module.split(feats) if isinstance(self.module, StackedLayers) else [feats]


def load_source(system: SystemSpec, device: torch.device) -> FrameSource:
    """The frame source of a system, on ``device``."""
    if system.signal:
        cfg = FrameFeatureConfig(kind=system.spec)
        module: nn.Module = FrameFeatureExtractor(cfg).to(device)
        return FrameSource(system, module, [SIGNAL_LAYER], cfg.window, cfg.hop, cfg.sample_rate,
                           {"kind": cfg.kind, "feature_config": cfg.to_dict(), "dim": cfg.dim})
    from speechunits.encoders.checkpoints import load_encoder

    path = Path(system.spec)
    model = load_encoder(path, map_location="cpu").to(device).eval()
    stacked = StackedLayers(model)
    return FrameSource(system, stacked, list(range(1, stacked.num_layers + 1)), model.receptive_field,
                       int(model.config.hop_length), int(model.config.sample_rate),
                       {"kind": "encoder", "path": str(path), "sha256": sha256_path(path), "dim": model.embed_dim,
                        "num_layers": stacked.num_layers})


# ------------------------------------------------------------------ reference phones
def phone_label(label: str) -> str | None:
    """A tier label as a phone: stress digits removed (``AH1`` -> ``AH``); None for silence/empty."""
    if is_silence(label):
        return None
    phone = normalize_syllable_label(label)
    return phone or None


def read_phone_tier(path: Path, tier: str) -> list[Interval]:
    """The intervals of tier ``tier`` of a TextGrid; AlignmentError listing the tiers it has otherwise."""
    tiers = read_textgrid(path)
    if tier not in tiers:
        raise AlignmentError(path, f"no tier named {tier!r} (--tier); tiers found: {sorted(tiers)}")
    return tiers[tier]


def frame_centres(num_frames: int, *, window: int, hop: int, sample_rate: int) -> np.ndarray:
    """Seconds of the centre of each frame's receptive field: ``(i * hop + window / 2) / sample_rate``."""
    return (np.arange(num_frames, dtype=np.float64) * hop + window / 2) / sample_rate


def frame_phones(intervals: Sequence[Interval], num_frames: int, *, window: int, hop: int,
                 sample_rate: int) -> np.ndarray:
    """Per-frame phone labels (object array; None where silent or outside every interval)."""
    starts = [iv.start for iv in intervals]
    labels = np.full(num_frames, None, dtype=object)
    for i, t in enumerate(frame_centres(num_frames, window=window, hop=hop, sample_rate=sample_rate)):
        j = bisect.bisect_right(starts, t) - 1
        if j >= 0 and t < intervals[j].end:
            labels[i] = phone_label(intervals[j].label)
    return labels


@dataclass
class ProbeSet:
    """The probe utterances (sorted by id) with their TextGrids, and the corpus ids that have none."""

    utts: list[Utterance]
    grids: dict[str, Path]
    missing: list[str] = field(default_factory=list)


def select_utterances(utts: Iterable[Utterance], alignments: Path, max_utts: int) -> ProbeSet:
    """The first ``max_utts`` utterances by id that have ``<id>.TextGrid`` under ``alignments`` (recursive).

    :attr:`ProbeSet.missing` lists every utterance of the corpus without one; AlignmentError
    when none has one.
    """
    index = index_files(alignments, ".TextGrid")
    ordered = sorted(utts, key=lambda u: u.id)
    missing = [u.id for u in ordered if u.id not in index]
    chosen = [u for u in ordered if u.id in index][:max_utts]
    if not chosen:
        raise AlignmentError(alignments, f"no <utt id>.TextGrid found for any of the {len(ordered)} utterances "
                                         "(searched recursively)")
    return ProbeSet(chosen, {u.id: index[u.id] for u in chosen}, missing)


def load_tiers(probe: ProbeSet, tier: str) -> dict[str, list[Interval]]:
    """The ``tier`` intervals of every probe utterance."""
    return {u.id: read_phone_tier(probe.grids[u.id], tier) for u in probe.utts}


# ------------------------------------------------------------------ frames of a system
@dataclass
class SystemFrames:
    """All frames of the probe utterances for one system: per layer ``(N, D)`` float16, per frame its phone."""

    layers: dict[int, np.ndarray]
    phones: np.ndarray  # (N,) object: phone or None
    utterances: int
    bad: list[str]


def collect_frames(source: FrameSource, probe: ProbeSet, tiers: dict[str, list[Interval]], *,
                   batch_seconds: float = 60.0, num_workers: int = 2, progress: bool = True) -> SystemFrames:
    """One batched pass over the probe utterances: every layer's frames (float16) and each frame's phone."""
    features = LayerFeatures(source.module, None, probe.utts, batch_seconds=batch_seconds, num_workers=num_workers,
                             desc=f"probe-phones {source.system.name}", progress=progress)
    blocks: dict[int, list[np.ndarray]] = {layer: [] for layer in source.layers}
    phones: list[np.ndarray] = []
    done = 0
    for utt, _num_samples, feats in features:
        for layer, rows in zip(source.layers, source.split(feats)):
            blocks[layer].append(rows.astype(np.float16))
        phones.append(frame_phones(tiers[utt.id], feats.shape[0], window=source.window, hop=source.hop,
                                   sample_rate=source.sample_rate))
        done += 1
    layers = {layer: (np.concatenate(b) if b else np.zeros((0, 0), np.float16)) for layer, b in blocks.items()}
    return SystemFrames(layers, np.concatenate(phones) if phones else np.zeros(0, object), done, list(features.bad))


# ------------------------------------------------------------------ clustering and scores
def cluster_frames(frames: np.ndarray, k: int, *, seed: int, iters: int, device: torch.device) -> np.ndarray:
    """k-means (squared Euclidean) of ``(N, D)`` frames; the cluster id of every frame."""
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    result = kmeans(x, k, metric="euclidean", iters=iters, seed=seed, device=device, progress=False)
    labels, _ = assign_chunked(x.to(device), result.centroids.to(device), "euclidean")
    return labels.cpu().numpy()


def score_layers(name: str, frames: SystemFrames, k: int, *, seed: int, iters: int, device: torch.device,
                 progress: bool = True) -> Iterator[tuple[int, FramePurity]]:
    """(layer, scores) of every layer of one system."""
    labelled = np.array([p is not None for p in frames.phones], dtype=bool)
    if not labelled.any():
        raise AlignmentError(None, f"system {name}: no frame of the {frames.utterances} probe utterance(s) lies in a "
                                   "phone (every frame centre is in silence or outside the tier)")
    for layer, rows in tqdm(frames.layers.items(), desc=f"k-means {name}", unit="layer", disable=not progress,
                            leave=False):
        if k > rows.shape[0]:
            raise ConfigError(None, f"--k {k} is more than the {rows.shape[0]} frames of system {name}: lower --k or "
                                    "raise --max-utts")
        clusters = cluster_frames(rows, k, seed=seed, iters=iters, device=device)
        yield layer, frame_purity(frames.phones[labelled].astype(str), clusters[labelled])


__all__ = [
    "SIGNAL_LAYER",
    "FrameSource",
    "ProbeSet",
    "StackedLayers",
    "SystemFrames",
    "SystemSpec",
    "cluster_frames",
    "collect_frames",
    "frame_centres",
    "frame_phones",
    "load_source",
    "load_tiers",
    "parse_system",
    "parse_systems",
    "phone_label",
    "read_phone_tier",
    "score_layers",
    "select_utterances",
]
