"""Sylber training as a :class:`speechunits.train.loop.TrainTask` (stage 1 and stage 2).

Both stages regress the student's last-layer features, computed on augmented audio (noise,
and optionally pitch shift and reverberation: :mod:`speechunits.sylber.augmentations`), onto
the teacher's features averaged within each syllable segment (zeros outside segments). An
optional speed perturbation changes the crop that both see (the segments scaled with it).
The two stages differ only in where the segments come from:

- stage 1: a unit set of segments made beforehand (the bootstrap segmenter, or any
  segment source written in the unit-token format), shifted into each training crop;
- stage 2: online, by the greedy segmentation of the teacher's features, with the adaptive
  norm threshold (running speech/non-speech Gaussians, synchronised across ranks) and a
  merge threshold drawn per step from ``merge_threshold_range``.

The training audio may be several data dirs / manifests (``task.data`` a list, concatenated;
ids unique across them), and stage 1's segments several unit sets (``task.segments`` a list,
merged by id).

The teacher is an EMA of the student (``ema_decay`` 1.0, the paper's setting, keeps it
frozen at the initial model). Without a pretrained initial model (``init``), stage 1 can
instead regress onto a fixed log-mel teacher (``teacher: logmel``, see
:mod:`speechunits.sylber.feature_teacher`): a random-init teacher's features carry too
little information to learn from. Task options live under ``task:`` in the training config;
see ``recipes/conf/sylber_stage1.yaml`` / ``sylber_stage2.yaml`` and :data:`DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from speechunits.data.jsonl import load_manifests
from speechunits.data.pipeline import AudioBatch, training_crops
from speechunits.errors import ConfigError
from speechunits.sylber.augment import NoiseAugmenter, NoiseBank
from speechunits.sylber.augmentations import Augmentations
from speechunits.sylber.feature_teacher import LogMelTeacher
from speechunits.sylber.losses import distillation_loss, segment_average_targets
from speechunits.encoders.model import EncoderConfig, SpeechEncoder, conv_output_lengths
from speechunits.sylber.segment import greedy_segment_batch
from speechunits.sylber.speed import scale_segments
from speechunits.sylber.thresholder import AdaptiveNormThreshold
from speechunits.train.config import TrainConfig
from speechunits.train.distributed import DistInfo
from speechunits.train.ema import EMATeacher
from speechunits.train.wrap import unwrap_model

DEFAULTS: dict[str, Any] = {
    "stage": 1,
    "data": None,  # Kaldi data dir or JSONL manifest of the training audio, or a list of them (concatenated)
    "segments": None,  # stage 1: unit set directory with the bootstrap segments, or a list of them (merged by id)
    "init": None,  # checkpoint to start the student (and teacher) from; None: random init
    "init_sha256": None,  # set by train-sylber: content hash of ``init`` (a changed init model is a new run)
    "model": "base",  # base | tiny | {preset: base|tiny, <EncoderConfig field>: value} (when init is None)
    "num_layers": None,  # truncate an init checkpoint (9 for Sylber on HuBERT base)
    "ema_decay": 1.0,
    "teacher": "model",  # model (EMA of the student, the paper) | logmel (stage 1 from scratch, no SSL checkpoint)
    "logmel_scale": 1.0,  # scale of the log-mel teacher's features
    "logmel_deltas": True,  # log-mel teacher: append time derivatives
    "target_norm": None,  # rescale every segment-mean target to this L2 norm (None: the paper's plain mean)
    "logmel_standardise": "speech",  # log-mel teacher: statistics over the segments' frames (speech) | all frames (utterance)
    "crop_seconds": 5.0,
    "max_batch_seconds": 500.0,  # per rank: 100 crops of 5 s
    "num_workers": 2,
    "noise": {},  # NoiseAugmenter options
    "noise_dir": None,
    "augment": {},  # speed / pitch / reverb options (speechunits.sylber.augmentations); all off by default
    "merge_threshold_range": [0.8, 0.9],
    "thresholder": {},  # AdaptiveNormThreshold options (start statistics, decay, fixed)
    "thresholder_start": "stats",  # stage 2: stats (adapt from the init model's norm statistics) |
    #   threshold (pin the norm threshold the init checkpoint records, e.g. a dev-tuned one)
    "silence_stats_from": "student",  # student (reference stage 2) | teacher
    "export_stats_decay": 0.99,  # EMA decay of the student-norm statistics behind the exported threshold
}


NORM_STATS = ("speech_mean", "speech_var", "silence_mean", "silence_var")
STREAMS = {"noise": 0, "speed": 1, "pitch": 2, "reverb": 3}  # one generator per augmentation kind


def _opts(config: TrainConfig) -> dict[str, Any]:
    unknown = sorted(set(config.task) - set(DEFAULTS))
    if unknown:
        raise ConfigError(None, f"unknown sylber task options {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **config.task}
    if opts["stage"] not in (1, 2):
        raise ConfigError(None, f"task.stage must be 1 or 2, got {opts['stage']!r}")
    if not opts["data"]:
        raise ConfigError(None, "task.data (Kaldi data dir or manifest of training audio) is required")
    for key in ("data", "segments"):
        if isinstance(opts[key], (list, tuple)) and not all(isinstance(p, str) and p for p in opts[key]):
            raise ConfigError(None, f"task.{key} must be a path or a list of paths, got {opts[key]!r}")
    if opts["stage"] == 1 and not opts["segments"]:
        raise ConfigError(None, "stage 1 needs task.segments: a unit set of bootstrap segments "
                                "(speechunits bootstrap-segments makes one)")
    if opts["teacher"] not in ("model", "logmel"):
        raise ConfigError(None, f"task.teacher must be 'model' or 'logmel', got {opts['teacher']!r}")
    if opts["teacher"] == "logmel" and opts["stage"] != 1:
        raise ConfigError(None, "task.teacher=logmel is for stage 1 only; stage 2 distils from the model itself")
    if opts["logmel_standardise"] not in ("speech", "utterance"):
        raise ConfigError(None, f"task.logmel_standardise must be 'speech' or 'utterance', got {opts['logmel_standardise']!r}")
    if opts["thresholder_start"] not in ("stats", "threshold"):
        raise ConfigError(None, f"task.thresholder_start must be 'stats' or 'threshold', got {opts['thresholder_start']!r}")
    if opts["silence_stats_from"] not in ("student", "teacher"):
        raise ConfigError(None, "task.silence_stats_from must be 'student' or 'teacher'")
    lo, hi = opts["merge_threshold_range"]
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(None, f"task.merge_threshold_range must satisfy 0 <= lo <= hi <= 1, got {[lo, hi]}")
    return opts


def build_student(opts: dict[str, Any]) -> SpeechEncoder:
    """The student: loaded from ``init`` or freshly initialised from ``model``."""
    if opts["init"]:
        from speechunits.encoders.checkpoints import load_encoder

        model = load_encoder(opts["init"], num_layers=opts["num_layers"])
        return model.train()
    try:
        config = EncoderConfig.from_spec(opts["model"])
    except ValueError as err:
        raise ConfigError(None, f"task.model: {err}") from None
    return SpeechEncoder(config)


def as_paths(value: str | Path | list[str] | tuple[str, ...]) -> list[str]:
    """A ``task.data`` / ``task.segments`` value as a list of paths."""
    return [str(p) for p in value] if isinstance(value, (list, tuple)) else [str(value)]


def load_segments(unit_dirs: str | Path | list[str], frame_rate: float) -> dict[str, np.ndarray]:
    """Every utterance's (N, 2) [start, end) segments of one or several unit sets (merged by id),
    on the model's frame grid. An id in two unit sets is a ConfigError naming both."""
    from speechunits.sylber.segment_sources import FRAME_RATE, unit_set_segments

    merged: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for unit_dir in as_paths(unit_dirs):
        if abs(frame_rate - FRAME_RATE) > 1e-9:
            raise ConfigError(unit_dir, f"model frame rate {frame_rate} Hz differs from the segment grid "
                                        f"{FRAME_RATE} Hz")
        for utt, seg in unit_set_segments(unit_dir).items():
            if utt in merged:
                raise ConfigError(unit_dir, f"utterance {utt!r} also has segments in {source[utt]}; "
                                            "the unit sets of task.segments must hold distinct ids")
            merged[utt], source[utt] = seg, unit_dir
    return merged


def segment_mask(segments: list[np.ndarray], num_frames: int) -> Tensor:
    """(B, num_frames) bool: True on the frames inside a segment of each utterance."""
    mask = torch.zeros(len(segments), num_frames, dtype=torch.bool)
    for b, seg in enumerate(segments):
        for start, end in np.asarray(seg, dtype=np.int64).reshape(-1, 2):
            mask[b, int(start):int(end)] = True
    return mask


def crop_segments(segments: np.ndarray, frame_offset: int, num_frames: int) -> np.ndarray:
    """Segments shifted by ``-frame_offset`` and clipped to ``[0, num_frames)``; empty ones dropped."""
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2) - frame_offset
    seg = np.clip(seg, 0, num_frames)
    return seg[seg[:, 1] > seg[:, 0]]


class SylberTask:
    """Sylber stage 1 / stage 2 self-distillation (see the module docstring)."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None) -> None:
        self.opts = _opts(config)
        self.dist = dist or DistInfo()
        self.seed = int(config.seed)
        self.model = build_student(self.opts)
        self.model.train()
        self.hop = self.model.config.hop_length
        self.conv_layers = self.model.config.extractor_conv_layer_config
        self.frame_rate = self.model.frame_rate  # the Trainer later wraps self.model in DDP
        if self.dist.world_size > 1 and self.model.config.layer_drop > 0 and not config.ddp_find_unused:
            # each rank drops different layers, so DDP must not wait for their gradients
            raise ConfigError(None, f"layer_drop={self.model.config.layer_drop} under DDP needs ddp_find_unused=true "
                                    "(or task.model layer_drop 0)")
        self.feature_teacher: LogMelTeacher | None = None
        self.teacher: EMATeacher | None = None
        if self.opts["teacher"] == "logmel":
            cfg = self.model.config
            self.feature_teacher = LogMelTeacher(cfg.encoder_embed_dim, cfg.extractor_conv_layer_config,
                                                 sample_rate=cfg.sample_rate, scale=float(self.opts["logmel_scale"]),
                                                 deltas=bool(self.opts["logmel_deltas"]), seed=self.seed)
        else:
            self.teacher = EMATeacher(self.model, decay=float(self.opts["ema_decay"]))
        # Stage 2 starts the running norm statistics from those the init model was exported
        # with (its own feature scale), unless the config gives them.
        recorded = getattr(self.model, "segmentation_defaults", {})
        start = {k: v for k, v in recorded.items() if k in NORM_STATS}
        if self.opts["thresholder_start"] == "threshold":
            if "norm_threshold" not in recorded:
                raise ConfigError(self.opts["init"], "task.thresholder_start=threshold needs an init checkpoint that "
                                                     "records a norm threshold (one exported by train-sylber or "
                                                     "tune-segmentation)")
            start["fixed"] = float(recorded["norm_threshold"])
        self.thresholder = AdaptiveNormThreshold(**{**start, **self.opts["thresholder"]})
        # The student's own speech/non-speech norm statistics (inside vs outside the target
        # segments): their crossing point is the norm threshold exported with the model.
        self.student_norms = AdaptiveNormThreshold(decay=float(self.opts["export_stats_decay"]))
        bank = NoiseBank.from_dir(self.opts["noise_dir"]) if self.opts["noise_dir"] else None
        self.augmenter = NoiseAugmenter(**self.opts["noise"], noise_bank=bank)
        self.augment = Augmentations.from_options(self.opts["augment"], sample_rate=self.model.config.sample_rate)
        self.utts = load_manifests(as_paths(self.opts["data"]), require_text=False)
        self.segments: dict[str, np.ndarray] = {}
        if self.opts["stage"] == 1:
            self.segments = load_segments(self.opts["segments"], self.model.frame_rate)
            missing = [u.id for u in self.utts if u.id not in self.segments]
            if missing:
                sources = as_paths(self.opts["segments"])
                where = sources[0] if len(sources) == 1 else None
                prefix = "" if where else f"task.segments {sources}: "
                raise ConfigError(where, f"{prefix}no segments for {len(missing)} training utterance(s), "
                                         f"e.g. {missing[:3]}; rerun the bootstrap stage on this data")

    # -- data ---------------------------------------------------------------------------
    def batches(self, epoch: int) -> Iterator[AudioBatch]:
        """This rank's crops of one epoch, in a seeded order (same for the same epoch)."""
        return training_crops(self.utts, epoch=epoch, seed=self.seed,
                              max_batch_seconds=float(self.opts["max_batch_seconds"]),
                              crop_seconds=float(self.opts["crop_seconds"]), crop_align=self.hop,
                              rank=self.dist.rank, world_size=self.dist.world_size,
                              num_workers=int(self.opts["num_workers"]))

    def num_items(self, batch: AudioBatch) -> int:
        return int(batch.lengths.shape[0])

    def _generator(self, step: int, device: torch.device | str = "cpu", kind: str = "noise") -> torch.Generator:
        """The step's generator of one augmentation ``kind`` (on ``device``: the noise and reverb draw
        on the batch's device), fixed by (seed, step, rank, kind)."""
        if kind == "noise":  # the seed it always had: runs without task.augment draw the same noise
            seed = (self.seed * 1_000_003 + step) * 1_009 + self.dist.rank
        else:
            key = [self.seed % 2**63, step, self.dist.rank, STREAMS[kind]]
            seed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])
        return torch.Generator(device=device).manual_seed(seed)

    # -- segments -----------------------------------------------------------------------
    def _file_segments(self, batch: AudioBatch, frame_lengths: Tensor,
                       factors: list[Fraction] | None = None) -> list[np.ndarray]:
        """The stage-1 segments of each crop of ``batch`` (as read, before any speed perturbation),
        scaled by the crop's speed factor and clipped to ``frame_lengths`` (after it)."""
        offsets = batch.offsets if batch.offsets is not None else torch.zeros_like(batch.lengths)
        if factors is None:
            return [crop_segments(self.segments[utt], int(off) // self.hop, int(n))
                    for utt, off, n in zip(batch.ids, offsets.tolist(), frame_lengths.tolist())]
        read_frames = conv_output_lengths(batch.lengths.cpu(), self.conv_layers).tolist()
        rows = zip(batch.ids, offsets.tolist(), read_frames, frame_lengths.tolist(), factors)
        return [scale_segments(crop_segments(self.segments[utt], int(off) // self.hop, int(n0)), f, int(n))
                for utt, off, n0, n, f in rows]

    def _online_segments(self, teacher: Tensor, frame_lengths: Tensor, step: int) -> tuple[list[np.ndarray], float, float]:
        lo, hi = self.opts["merge_threshold_range"]
        merge = float(lo + (hi - lo) * torch.rand(1, generator=self._generator(step)).item())
        norm_thr = self.thresholder.threshold
        feats = teacher.detach().float().cpu().numpy()
        segments = greedy_segment_batch(feats, frame_lengths.cpu().numpy(), norm_threshold=norm_thr,
                                        merge_threshold=merge)
        return segments, norm_thr, merge

    def _update_student_norms(self, student: Tensor, inside: Tensor, valid: Tensor) -> None:
        norms = student.detach().float().norm(dim=-1)
        speech, silence = valid & inside, valid & ~inside
        stats = torch.stack([speech.sum(), norms[speech].sum(), norms[speech].pow(2).sum(),
                             silence.sum(), norms[silence].sum(), norms[silence].pow(2).sum()]).double()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        v = stats.tolist()
        self.student_norms.update_from_moments((v[0], v[1], v[2]), (v[3], v[4], v[5]))

    def _update_thresholder(self, teacher: Tensor, student: Tensor, valid: Tensor, norm_thr: float) -> None:
        t_norm = teacher.detach().float().norm(dim=-1)
        s_norm = student.detach().float().norm(dim=-1)
        speech = valid & (t_norm >= norm_thr)
        silence = valid & (t_norm < norm_thr)
        sil_src = s_norm if self.opts["silence_stats_from"] == "student" else t_norm
        stats = torch.stack([
            speech.sum(), t_norm[speech].sum(), t_norm[speech].pow(2).sum(),
            silence.sum(), sil_src[silence].sum(), sil_src[silence].pow(2).sum(),
        ]).double()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # every rank applies the same update
        v = stats.tolist()
        self.thresholder.update_from_moments((v[0], v[1], v[2]), (v[3], v[4], v[5]))

    # -- step ---------------------------------------------------------------------------
    def training_step(self, batch: AudioBatch, step: int) -> tuple[Tensor, dict[str, float]]:
        def generator_for(kind: str, device: torch.device | str) -> torch.Generator:
            return self._generator(step, device, kind)

        wavs, lengths, factors = self.augment.both(batch.waveforms, batch.lengths, generator_for)
        metrics: dict[str, float] = {}
        inside: Tensor | None = None  # (B, T) frames inside a target segment
        if self.feature_teacher is not None:  # stage 1 only: segments first, they set the teacher's statistics
            frame_lengths = conv_output_lengths(lengths, self.feature_teacher.conv_layers).to(wavs.device)
            segments = self._file_segments(batch, frame_lengths, factors)
            inside = segment_mask(segments, int(frame_lengths.max())).to(wavs.device)
            speech = inside if self.opts["logmel_standardise"] == "speech" else None
            teacher, _ = self.feature_teacher(wavs, lengths, speech_mask=speech)
        else:
            with torch.no_grad():
                teacher, frame_lengths = self.teacher(wavs, lengths)
            if self.opts["stage"] == 1:
                segments = self._file_segments(batch, frame_lengths, factors)
            else:
                segments, norm_thr, merge = self._online_segments(teacher, frame_lengths, step)
                metrics.update(norm_threshold=norm_thr, merge_threshold=merge)
        student_in = self.augment.student(wavs, lengths, generator_for)
        noisy = self.augmenter(student_in, self._generator(step, wavs.device), lengths)
        student, _ = self.model(noisy, lengths)
        valid = torch.arange(student.shape[1], device=student.device)[None, :] < frame_lengths[:, None]
        target = segment_average_targets(teacher.float(), segments, self.opts["target_norm"])
        loss = distillation_loss(student, target, valid)
        if self.opts["stage"] == 2:
            self._update_thresholder(teacher, student, valid, metrics["norm_threshold"])
        if inside is None:
            inside = segment_mask(segments, student.shape[1]).to(student.device)
        self._update_student_norms(student, inside, valid)
        metrics["student_norm_threshold"] = self.student_norms.threshold
        seconds = float(frame_lengths.sum()) / self.frame_rate
        metrics["tokens_per_second"] = sum(len(s) for s in segments) / max(seconds, 1e-9)
        return loss, metrics

    def on_step_end(self, step: int) -> None:
        if self.teacher is not None:
            self.teacher.update(self.model)

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"teacher": None if self.teacher is None else self.teacher.state_dict(),
                "thresholder": self.thresholder.state_dict(), "student_norms": self.student_norms.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.thresholder.load_state_dict(state["thresholder"])
        self.student_norms.load_state_dict(state["student_norms"])

    def segmentation_thresholds(self, which: str = "student") -> dict[str, float]:
        """Thresholds to segment the exported model's features with.

        The student's norm threshold is the crossing point of its own speech/non-speech norm
        statistics; the teacher's is the adaptive threshold (stage 2) or the configured start.
        The merge threshold is the middle of the training range.
        """
        lo, hi = self.opts["merge_threshold_range"]
        stats = self.student_norms if which == "student" else self.thresholder
        out = {"norm_threshold": float(stats.threshold), "merge_threshold": float((lo + hi) / 2)}
        out.update({k: float(getattr(stats, k)) for k in NORM_STATS})
        return out

    def export(self, path: str | Path, which: str = "student") -> None:
        """Save the student (or the teacher) as a standalone model checkpoint for inference."""
        from speechunits.encoders.checkpoints import save_encoder

        if which != "student" and self.teacher is None:
            raise ConfigError(None, "this run's teacher is the fixed log-mel extractor, not a model to export")
        module = unwrap_model(self.model) if which == "student" else self.teacher.module
        save_encoder(path, module, segmentation=self.segmentation_thresholds(which))
