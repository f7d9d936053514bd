"""Sylber stage 1 / stage 2 training through the shared loop (tiny model, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli import main
from speechunits.data.kaldi import write_kaldi_dir
from speechunits.data.utterance import Utterance
from speechunits.errors import ConfigError, ManifestError
from speechunits.sylber.speed import scale_segments
from speechunits.sylber.train_task import SylberTask, crop_segments
from speechunits.train.config import load_config
from speechunits.units import UnitSetWriter

SR = 16000


def make_corpus(root: Path, n: int = 6, prefix: str = "u") -> tuple[Path, Path]:
    """Tone 'syllables' separated by silence, utterances ``<prefix>0..``; returns (data dir, unit set
    of their segments)."""
    rng = np.random.default_rng(0)
    utts = []
    unit_dir = root / "segments"
    with UnitSetWriter(unit_dir, kind="syllable", sample_rate=SR, hop=320) as writer:
        for i in range(n):
            wav = np.zeros(int(1.6 * SR), dtype=np.float32)
            starts, ends = [], []
            t = 0.1
            while t < 1.4:
                dur = rng.uniform(0.12, 0.25)
                a, b = int(t * SR), int((t + dur) * SR)
                f0 = rng.uniform(100, 300)
                wav[a:b] = 0.3 * np.sin(2 * np.pi * f0 * np.arange(b - a) / SR)
                starts.append(int(t * 50))
                ends.append(int((t + dur) * 50))
                t += dur + rng.uniform(0.03, 0.1)
            path = root / f"{prefix}{i}.wav"
            sf.write(path, wav, SR)
            utts.append(Utterance(id=f"{prefix}{i}", audio=str(path), text=None, speaker="s0"))
            writer.add(id=f"{prefix}{i}", audio=str(path), num_samples=len(wav), sample_rate=SR, starts=starts,
                       ends=ends)
    write_kaldi_dir(utts, root / "data")
    return root / "data", unit_dir


def overrides(data: Path, **extra: object) -> list[str]:
    base = {"max_steps": 3, "save_every": 2, "log_every": 1, "progress": False, "tensorboard": False,
            "task.data": data, "task.model": "tiny", "task.crop_seconds": 1.0, "task.max_batch_seconds": 3.0,
            "task.num_workers": 1, "task.noise.augment_prob": 0.5}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_crop_segments() -> None:
    seg = np.array([[0, 10], [12, 30], [40, 60]])
    assert crop_segments(seg, 15, 30).tolist() == [[0, 15], [25, 30]]


def test_stage1_then_stage2(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path)
    s1 = tmp_path / "stage1"
    assert main(["train-sylber", "--out-dir", str(s1), "--device", "cpu",
                 *overrides(data, **{"task.segments": segments, "task.stage": 1})]) == 0
    assert (s1 / "model.pt").is_file() and (s1 / "teacher.pt").is_file()
    rows = [json.loads(line) for line in (s1 / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses and all(np.isfinite(losses))

    s2 = tmp_path / "stage2"
    assert main(["train-sylber", "--out-dir", str(s2), "--device", "cpu",
                 *overrides(data, **{"task.stage": 2, "task.init": s1 / "model.pt",
                                     "task.thresholder.decay": 0.5})]) == 0
    rows = [json.loads(line) for line in (s2 / "metrics.jsonl").read_text().splitlines()]
    thresholds = [r["train/norm_threshold"] for r in rows if "train/norm_threshold" in r]
    assert len(thresholds) >= 2 and thresholds[0] != thresholds[-1]  # the threshold adapts
    from speechunits.encoders.checkpoints import load_encoder

    model = load_encoder(s2 / "model.pt")
    feats, _ = model(torch.zeros(1, SR))
    assert feats.shape[-1] == 64


def test_stage1_needs_segments_for_every_utterance(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path, n=3)
    other = tmp_path / "other"
    other.mkdir()
    _, few = make_corpus(other, n=2)
    cfg = load_config(None, overrides(data, **{"task.segments": few, "task.stage": 1}))
    with pytest.raises(ConfigError, match="no segments for 1 training utterance"):
        SylberTask(cfg)
    with pytest.raises(ConfigError, match="needs task.segments"):
        SylberTask(load_config(None, overrides(data, **{"task.stage": 1})))
    with pytest.raises(ConfigError, match="unknown sylber task options"):
        SylberTask(load_config(None, overrides(data, **{"task.segments": segments, "task.bogus": 1})))


def test_several_data_dirs_and_unit_sets(tmp_path: Path) -> None:
    """task.data / task.segments as lists (the YAML-list override the recipe passes): concatenated,
    merged by id; an id in two of them is an error naming both."""
    data_a, seg_a = make_corpus(tmp_path / "a", n=2, prefix="a")
    data_b, seg_b = make_corpus(tmp_path / "b", n=3, prefix="b")
    task = SylberTask(load_config(None, overrides(f"[{data_a},{data_b}]", **{"task.segments": f"[{seg_a},{seg_b}]"})))
    assert [u.id for u in task.utts] == ["a0", "a1", "b0", "b1", "b2"]
    assert sorted(task.segments) == ["a0", "a1", "b0", "b1", "b2"]
    with pytest.raises(ManifestError, match=rf"{data_b}: utterance id 'b0' is also in {data_b}"):
        SylberTask(load_config(None, overrides(f"[{data_b},{data_b}]", **{"task.segments": seg_b})))
    with pytest.raises(ConfigError, match=rf"{seg_b}: utterance 'b0' also has segments in {seg_b}"):
        SylberTask(load_config(None, overrides(data_b, **{"task.segments": f"[{seg_b},{seg_b}]"})))
    with pytest.raises(ConfigError, match=rf"{seg_a}: no segments for 3 training utterance"):
        SylberTask(load_config(None, overrides(f"[{data_a},{data_b}]", **{"task.segments": f"[{seg_a}]"})))


def test_training_with_every_augmentation(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path, n=4)
    out = tmp_path / "s1"
    aug = {"task.augment.speed.prob": 1.0, "task.augment.pitch.prob": 1.0, "task.augment.reverb.prob": 1.0,
           "task.augment.reverb.early_reflections": 3, "max_steps": 2}
    assert main(["train-sylber", "--out-dir", str(out), "--device", "cpu",
                 *overrides(data, **{"task.segments": segments, **aug})]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.all(np.isfinite([r["train/loss"] for r in rows if "train/loss" in r]))
    with pytest.raises(ConfigError, match="unknown task.augment.pitch options"):
        SylberTask(load_config(None, overrides(data, **{"task.segments": segments, "task.augment.pitch.steps": 2})))


def test_speed_perturbed_crops_get_scaled_segments_and_own_generators(tmp_path: Path) -> None:
    from fractions import Fraction

    from speechunits.data.pipeline import AudioBatch

    data, segments = make_corpus(tmp_path, n=2)
    task = SylberTask(load_config(None, overrides(data, **{"task.segments": segments,
                                                           "task.augment.speed.prob": 1.0})))
    batch = AudioBatch(ids=["u0", "u1"], waveforms=torch.zeros(2, SR), lengths=torch.tensor([SR, SR]),
                       offsets=torch.tensor([0, 3200]))
    factors = [Fraction(11, 10), Fraction(9, 10)]
    wavs, lengths, drawn = task.augment.both(batch.waveforms, batch.lengths, lambda k, d: task._generator(7, d, k))
    assert len(drawn) == 2 and all(0.9 <= f <= 1.1 for f in drawn) and any(f != 1 for f in drawn)
    assert wavs.shape[1] == int(lengths.max()) and lengths.tolist() != [SR, SR]
    new_frames = torch.tensor([45, 49])
    got = task._file_segments(batch, new_frames, factors)
    for g, utt, off, f, n in zip(got, ["u0", "u1"], [0, 10], factors, [45, 49]):
        # cropped on the read crop's 49 frames, then scaled by 1 / factor and clipped to the new frames
        assert g.tolist() == scale_segments(crop_segments(task.segments[utt], off, 49), f, n).tolist()
    assert task._file_segments(batch, new_frames)[1].tolist() == crop_segments(task.segments["u1"], 10, 49).tolist()
    # the noise keeps the seed it always had; each augmentation kind has its own
    assert task._generator(7).initial_seed() == (0 * 1_000_003 + 7) * 1_009 + 0
    seeds = {task._generator(7, "cpu", kind).initial_seed() for kind in ("noise", "speed", "pitch", "reverb")}
    assert len(seeds) == 4 and task._generator(8, "cpu", "speed").initial_seed() not in seeds


def test_exported_model_carries_its_thresholds(tmp_path: Path) -> None:
    from speechunits.encoders.checkpoints import load_encoder
    from speechunits.sylber.segmenter import Segmenter

    data, segments = make_corpus(tmp_path, n=3)
    cfg = load_config(None, overrides(data, **{"task.segments": segments}))
    task = SylberTask(cfg)
    task.student_norms.load_state_dict({**task.student_norms.state_dict(), "speech_mean": 9.0, "silence_mean": 1.0,
                                        "speech_var": 1.0, "silence_var": 1.0})
    task.export(tmp_path / "m.pt")
    model = load_encoder(tmp_path / "m.pt")
    assert model.segmentation_defaults["norm_threshold"] == pytest.approx(5.0)
    from speechunits.encoders.checkpoints import segmentation_defaults

    assert segmentation_defaults(tmp_path / "m.pt")["norm_threshold"] == pytest.approx(5.0)
    seg = Segmenter(model, device="cpu")
    assert seg.norm_threshold == pytest.approx(5.0) and seg.merge_threshold == pytest.approx(0.85)
    assert Segmenter(model, device="cpu", norm_threshold=2.0).norm_threshold == 2.0


def test_logmel_teacher_stage1(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path, n=4)
    out = tmp_path / "s1"
    assert main(["train-sylber", "--out-dir", str(out), "--device", "cpu",
                 *overrides(data, **{"task.segments": segments, "task.teacher": "logmel", "max_steps": 2})]) == 0
    assert (out / "model.pt").is_file() and not (out / "teacher.pt").exists()
    with pytest.raises(ConfigError, match="stage 1 only"):
        SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.teacher": "logmel"})))


def test_rerunning_a_finished_run_keeps_the_exported_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, segments = make_corpus(tmp_path, n=3)
    out = tmp_path / "s1"
    args = ["train-sylber", "--out-dir", str(out), "--device", "cpu", "--resume", "auto",
            *overrides(data, **{"task.segments": segments, "max_steps": 2})]
    assert main(args) == 0
    before = (out / "model.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "already at step 2" in capsys.readouterr().err
    assert (out / "model.pt").stat().st_mtime_ns == before  # later recipe stages stay up to date
    (out / "model.pt").unlink()  # killed between the last checkpoint and the export: export again
    assert main(args) == 0 and (out / "model.pt").is_file()


def test_rerun_after_a_kill_between_the_two_exports_writes_the_teacher(tmp_path: Path) -> None:
    """Killed after model.pt was renamed into place but before teacher.pt (chaos harness,
    kill point atomic-renamed:model.pt): the rerun writes teacher.pt and keeps model.pt."""
    data, segments = make_corpus(tmp_path, n=3)
    out = tmp_path / "s1"
    args = ["train-sylber", "--out-dir", str(out), "--device", "cpu",
            *overrides(data, **{"task.segments": segments, "max_steps": 2})]
    assert main(args) == 0
    teacher = (out / "teacher.pt").read_bytes()
    before = (out / "model.pt").stat().st_mtime_ns
    (out / "teacher.pt").unlink()
    assert main(args) == 0
    assert (out / "teacher.pt").read_bytes() == teacher
    assert (out / "model.pt").stat().st_mtime_ns == before


def test_two_runs_write_the_same_bytes(tmp_path: Path) -> None:
    """Checkpoints and exported models of one config are byte-identical run to run: no wall-clock
    rate in the checkpoint, no temporary file name inside the exported models' archives."""
    import shutil

    data, segments = make_corpus(tmp_path, n=3)
    out, names = tmp_path / "s1", ("checkpoints/step_00000002.pt", "model.pt", "teacher.pt")
    runs = []
    for _ in range(2):  # in one directory: the checkpoint's config holds out_dir
        shutil.rmtree(out, ignore_errors=True)
        assert main(["train-sylber", "--out-dir", str(out), "--device", "cpu",
                     *overrides(data, **{"task.segments": segments, "max_steps": 2})]) == 0
        runs.append({name: (out / name).read_bytes() for name in names})
    for name in names:
        assert runs[0][name] == runs[1][name], name


def test_logmel_teacher_frames_match_the_encoder() -> None:
    from speechunits.sylber.feature_teacher import LogMelTeacher
    from speechunits.encoders.model import EncoderConfig, SpeechEncoder

    config = EncoderConfig.tiny()
    model, teacher = SpeechEncoder(config), LogMelTeacher(64, config.extractor_conv_layer_config)
    wavs, lengths = torch.randn(2, 12000), torch.tensor([12000, 7000])
    feats, frames = teacher(wavs, lengths)
    student, student_frames = model(wavs, lengths)
    assert feats.shape == student.shape and torch.equal(frames, student_frames)
    assert torch.count_nonzero(feats[1, int(frames[1]):]) == 0
    alone, _ = teacher(wavs[1:, :7000], lengths[1:])
    assert torch.allclose(alone[0], feats[1, : int(frames[1])], atol=1e-4)  # padding does not leak in


def test_logmel_teacher_speech_statistics_and_deltas_by_hand() -> None:
    from speechunits.sylber.feature_teacher import masked_standardise, time_derivative

    x = torch.tensor([[[0.0], [10.0], [2.0], [4.0], [99.0]]])
    speech = torch.tensor([[False, False, True, True, False]])
    # statistics of frames 2 and 3 only: mean 3, std 1
    assert torch.allclose(masked_standardise(x, speech)[0, :, 0], torch.tensor([-3.0, 7.0, -1.0, 1.0, 96.0]))
    valid = torch.tensor([[True, True, True, True, False]])
    # central differences inside, one-sided at the first and last valid frame, 0 on padding
    d = time_derivative(torch.tensor([[[1.0], [3.0], [7.0], [8.0], [50.0]]]), valid)[0, :, 0]
    assert torch.allclose(d[:4], torch.tensor([2.0, 3.0, 2.5, 1.0]))


def test_logmel_teacher_standardises_over_the_speech_frames() -> None:
    from speechunits.sylber.feature_teacher import LogMelTeacher
    from speechunits.encoders.model import EncoderConfig

    config = EncoderConfig.tiny()
    teacher = LogMelTeacher(128, config.extractor_conv_layer_config, n_mels=80, deltas=False)
    gen = torch.Generator().manual_seed(0)
    wav = 1e-3 * torch.randn(1, 16000, generator=gen)
    wav[0, 4000:12000] += torch.randn(8000, generator=gen) * torch.linspace(0.1, 1.0, 8000)  # every band varies
    _, frames = teacher(wav)
    speech = torch.zeros(1, int(frames[0]), dtype=torch.bool)
    speech[0, 15:35] = True
    feats, _ = teacher(wav, speech_mask=speech)
    # 128 >= 80 mels: the projection is an isometry, so the speech frames' mean is 0 and their
    # mean squared norm is n_mels (each standardised mel band contributes 1)
    assert torch.allclose(feats[0, speech[0]].mean(0), torch.zeros(128), atol=1e-3)
    assert feats[0, speech[0]].pow(2).sum(-1).mean().item() == pytest.approx(80.0, rel=1e-3)
    unmasked, _ = teacher(wav)
    assert not torch.allclose(unmasked, feats)


def test_stage2_can_pin_the_init_checkpoints_norm_threshold(tmp_path: Path) -> None:
    from speechunits.encoders.checkpoints import save_encoder
    from speechunits.encoders.model import EncoderConfig, SpeechEncoder

    data, _ = make_corpus(tmp_path, n=2)
    save_encoder(tmp_path / "tuned.pt", SpeechEncoder(EncoderConfig.tiny()),
                      segmentation={"norm_threshold": 1.25, "merge_threshold": 0.7})
    task = SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.init": tmp_path / "tuned.pt",
                                                           "task.thresholder_start": "threshold"})))
    assert task.thresholder.threshold == pytest.approx(1.25)
    save_encoder(tmp_path / "plain.pt", SpeechEncoder(EncoderConfig.tiny()))
    with pytest.raises(ConfigError, match="records a norm threshold"):
        SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.init": tmp_path / "plain.pt",
                                                        "task.thresholder_start": "threshold"})))


def test_stage2_starts_from_the_init_models_norm_statistics(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path, n=3)
    task = SylberTask(load_config(None, overrides(data, **{"task.segments": segments})))
    task.student_norms.load_state_dict({**task.student_norms.state_dict(), "speech_mean": 9.0, "silence_mean": 1.0,
                                        "speech_var": 1.0, "silence_var": 1.0})
    task.export(tmp_path / "m.pt")
    stage2 = SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.init": tmp_path / "m.pt"})))
    assert stage2.thresholder.threshold == pytest.approx(5.0)
    given = SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.init": tmp_path / "m.pt",
                                                            "task.thresholder.speech_mean": 5.0})))
    assert given.thresholder.speech_mean == 5.0


def test_resuming_onto_a_different_init_model_is_refused(tmp_path: Path) -> None:
    data, segments = make_corpus(tmp_path, n=3)
    s1 = tmp_path / "s1"
    assert main(["train-sylber", "--out-dir", str(s1), "--device", "cpu",
                 *overrides(data, **{"task.segments": segments, "max_steps": 1})]) == 0
    init = tmp_path / "init.pt"
    init.write_bytes((s1 / "model.pt").read_bytes())
    s2 = tmp_path / "s2"
    base = ["train-sylber", "--out-dir", str(s2), "--device", "cpu"]
    assert main([*base, *overrides(data, **{"task.stage": 2, "task.init": init, "max_steps": 2})]) == 0
    from speechunits.encoders.checkpoints import load_encoder, save_encoder

    model = load_encoder(init)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_encoder(init, model)  # stage 1 retrained: same path, new content
    assert main([*base, *overrides(data, **{"task.stage": 2, "task.init": init, "max_steps": 2})]) == 2


@pytest.mark.slow
def test_stage2_under_torchrun_two_ranks(tmp_path: Path) -> None:
    """DDP (gloo, 2 CPU ranks): the adaptive threshold is all-reduced, rank 0 exports the model."""
    import os
    import subprocess
    import sys

    data, segments = make_corpus(tmp_path, n=6)
    s1 = tmp_path / "s1"
    assert main(["train-sylber", "--out-dir", str(s1), "--device", "cpu",
                 *overrides(data, **{"task.segments": segments, "max_steps": 1})]) == 0
    s2 = tmp_path / "s2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "speechunits", "train-sylber", "--out-dir", str(s2), "--device", "cpu",
           *overrides(data, **{"task.stage": 2, "task.init": s1 / "model.pt", "max_steps": 2,
                               "task.thresholder.decay": 0.5, "task.max_batch_seconds": 3.0,
                               "ddp_find_unused": "true"})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (s2 / "model.pt").is_file()
    from speechunits.train.checkpoint import latest_checkpoint, load_checkpoint

    state = load_checkpoint(latest_checkpoint(s2))
    assert state["world_size"] == 2 and state["step"] == 2
    thr = state["task"]["thresholder"]
    start = SylberTask(load_config(None, overrides(data, **{"task.stage": 2, "task.init": s1 / "model.pt"}))).thresholder
    assert thr["speech_mean"] != start.speech_mean  # updated from both ranks' statistics
