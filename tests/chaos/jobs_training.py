"""Chaos jobs that train: train-sylber, slu-cil, train-vocoder, train-tts, train-lm. See jobs.py.

Every job trains a tiny model for a few steps on CPU with ``save_every`` small, so the
checkpoints are written (and pruned) several times and a kill lands before, inside and after
each write. The shared Trainer promises that a resumed run's weights are bitwise equal to an
uninterrupted run's (fp32 on CPU), so checkpoints and exported models are compared byte for
byte like any other output; only logs and TensorBoard events are ignored. (Two runs of one
config write equal checkpoint bytes: no wall-clock rate in them, no pickle memo, no temporary
file name inside the archive; see docs/training.md.) The training commands have no thread
option: run the harness with ``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import ChaosJob  # noqa: E402

TRAIN = ["progress=false", "tensorboard=false", "precision=fp32", "log_every=1"]
"""Trainer options of every training job: no progress bar or TensorBoard, fp32 (bitwise resume), a metrics line a step."""


# ------------------------------------------------------------------ train-sylber (stage 1)
def _build_sylber(d: Path) -> None:
    from test_sylber_train import make_corpus

    make_corpus(d, n=4)


def _sylber_argv(root: Path) -> list[str]:
    return ["train-sylber", "--out-dir", "run", "--device", "cpu", *TRAIN,
            "max_steps=6", "save_every=2", "keep_last=2", "task.data=data", "task.segments=segments", "task.stage=1",
            "task.model=tiny", "task.crop_seconds=1.0", "task.max_batch_seconds=3.0", "task.num_workers=1",
            "task.noise.augment_prob=0.5"]


TRAIN_SYLBER = ChaosJob("train-sylber", _build_sylber, _sylber_argv)


# ------------------------------------------------------------------ train-lm
def _build_lm(d: Path) -> None:
    from test_lm_train import make_packed

    make_packed(d / "packed" / "train", n=40)
    make_packed(d / "packed" / "valid", n=8, seed=1)


def _lm_argv(root: Path) -> list[str]:
    # log_every a multiple of save_every: a checkpoint between two log lines holds the last logged
    # step's metrics, which a resumed run must restore
    return ["train-lm", "--out-dir", "lm", "--device", "cpu", "progress=false", "tensorboard=false", "precision=fp32",
            "max_steps=8", "save_every=2", "log_every=4", "validate_every=4", "keep_last=2", "task.train=packed/train",
            "task.valid=packed/valid", "task.model.d_model=32", "task.model.n_layers=2", "task.model.n_heads=2",
            "task.model.d_ff=64", "task.model.dropout=0.1", "task.max_len=16", "task.batch_tokens=128", "lr=3e-3",
            "weight_decay=0.0"]


TRAIN_LM = ChaosJob("train-lm", _build_lm, _lm_argv)


# ------------------------------------------------------------------ train-vocoder
def _build_vocoder(d: Path) -> None:
    from synthetic_inputs import corrupt_flac
    from vocoder_corpus import make_corpus

    make_corpus(d, n=6)
    corrupt_flac(d / "wav" / "utt03.flac")  # a bad item: skipped when first read


def _vocoder_argv(root: Path) -> list[str]:
    from vocoder_corpus import DISCS, model_overrides

    # audio read lazily (cache_audio=false): the bad utterance is found during the first epoch
    return ["train-vocoder", "--out-dir", "voc", "--device", "cpu", *TRAIN, "max_steps=6", "save_every=2",
            "keep_last=2", "validate_every=3", "lr=0.002", "task.train=units", "task.valid=units", "task.f0=f0",
            "task.use_speakers=true", "task.batch_size=2", "task.segment_samples=1600", "task.adversarial_start=3",
            f"task.discriminators={DISCS}", "task.valid_utts=2", "task.cache_audio=false",
            *model_overrides("frame_units", "task.model.use_f0=true", "task.model.duration_predictor=true",
                             "task.model.duration_dropout=0.1")]


TRAIN_VOCODER = ChaosJob("train-vocoder", _build_vocoder, _vocoder_argv)


# ------------------------------------------------------------------ train-tts
def _build_tts(d: Path) -> None:
    from tts_corpus import make_corpus

    make_corpus(d, missing_text=True, corrupt=True)  # two bad items: no transcript, unreadable audio


def _tts_argv(root: Path) -> list[str]:
    from tts_corpus import tiny_options

    return ["train-tts", "--out-dir", "tts", "--device", "cpu",
            *tiny_options("VT", "task.train=data", "task.valid=data", "max_steps=6", "save_every=2", "keep_last=2",
                          "validate_every=3", "precision=fp32", "task.batch_size=2")]


TRAIN_TTS = ChaosJob("train-tts", _build_tts, _tts_argv)


# ------------------------------------------------------------------ slu-cil
def _build_slu(d: Path) -> None:
    from slu_tones import write_tone_slu_data

    write_tone_slu_data(d)  # train/valid/test data dirs and a tiny 2-task conf.yaml


def _slu_argv(root: Path) -> list[str]:
    # rehearsal with knowledge distillation: memory, a teacher and its hypotheses between the tasks
    return ["slu-cil", "--config", "conf.yaml", "--method", "er_kd", "--data-dir", ".", "--out-dir", "exp",
            "--device", "cpu", "--threads", "1", "train.save_every=2", "train.keep_last=2"]


SLU_CIL = ChaosJob("slu-cil", _build_slu, _slu_argv)

CHAOS_JOBS: list[ChaosJob] = [TRAIN_SYLBER, TRAIN_LM, TRAIN_VOCODER, TRAIN_TTS, SLU_CIL]
