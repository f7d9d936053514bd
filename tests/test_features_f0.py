"""F0: Praat tracks of synthetic harmonic signals, the frame grids of extract_f0 and f0_to_frames,
log-F0/voicing, and the F0 store's reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.errors import AudioError, ConfigError, DataError
from speechunits.features.f0 import F0Config, extract_f0, f0_to_frames, log_f0_and_voicing, num_f0_frames
from speechunits.features.f0_store import F0_FORMAT, F0Store, log_f0_stats, write_f0, write_meta

SR = 16000


def harmonic(f0: float, seconds: float, sr: int = SR, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1))).astype(np.float32)


def test_harmonic_signal_then_silence() -> None:
    wave = np.concatenate([harmonic(150.0, 0.6), np.zeros(int(0.4 * SR), np.float32)])
    f0 = extract_f0(wave, SR)
    assert f0.dtype == np.float32 and f0.shape == (100,) == (num_f0_frames(len(wave), SR, 0.01),)
    voiced = f0[5:55]  # well inside the tone
    assert (voiced > 0).all() and np.abs(voiced - 150.0).max() < 1.5
    assert (f0[65:] == 0).all()  # silence is unvoiced
    # another rate and hop: frame i at i * hop, so the tone's end moves to frame 0.6 / hop
    f0_20 = extract_f0(np.concatenate([harmonic(220.0, 0.6, 22050), np.zeros(8820, np.float32)]), 22050,
                       F0Config(hop_seconds=0.02))
    assert f0_20.shape == (50,)
    assert np.abs(f0_20[3:28] - 220.0).max() < 2.0 and (f0_20[33:] == 0).all()


def test_track_follows_pitch_changes() -> None:
    wave = np.concatenate([harmonic(110.0, 0.4), harmonic(260.0, 0.4)])
    f0 = extract_f0(wave, SR)
    assert np.median(f0[8:35]) == pytest.approx(110.0, abs=1.0)
    assert np.median(f0[45:75]) == pytest.approx(260.0, abs=2.0)


def test_short_empty_and_non_finite() -> None:
    assert extract_f0(np.zeros(0, np.float32), SR).shape == (0,)
    short = extract_f0(harmonic(150.0, 0.03), SR)  # shorter than Praat's 3 / 60 Hz window
    assert short.shape == (3,) and (short == 0).all()
    assert (extract_f0(np.zeros(SR // 2, np.float32), SR) == 0).all()
    bad = harmonic(150.0, 0.2)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        extract_f0(bad, SR)
    with pytest.raises(ConfigError):
        F0Config(floor_hz=500.0, ceiling_hz=60.0)


def test_f0_to_frames_length_and_alignment() -> None:
    f0 = np.array([100.0] * 50 + [200.0] * 50, np.float32)  # 10 ms frames, the step between 0.49 s and 0.5 s
    for n in (0, 1, 7, 50, 51, 200):
        assert f0_to_frames(f0, 0.01, n, 0.02).shape == (n,)
    coarse = f0_to_frames(f0, 0.01, 50, 0.02)  # frame j centred at (j + 0.5) * 20 ms
    assert (coarse[:25] == 100.0).all() and (coarse[25:] == 200.0).all()
    fine = f0_to_frames(f0, 0.01, 200, 0.005)  # 5 ms frames centred at 2.5, 7.5, ... ms
    assert fine[98] == 100.0 and fine[99] == 200.0  # 492.5 ms -> source frame 49, 497.5 ms -> frame 50
    same = f0_to_frames(f0, 0.01, 100, 0.01)  # centres at (j + .5) * 10 ms round to frame j + 1 (ties go up)
    np.testing.assert_array_equal(same[:-1], f0[1:])
    long = f0_to_frames(f0, 0.01, 150, 0.01)  # past the end: the last frame's value
    assert (long[100:] == 200.0).all()
    assert (f0_to_frames(np.zeros(0, np.float32), 0.01, 9, 0.02) == 0).all()


def test_log_f0_and_voicing_numpy_and_torch() -> None:
    f0 = np.array([0.0, 100.0, 0.0, 200.0], np.float32)
    log_f0, voiced = log_f0_and_voicing(f0)
    np.testing.assert_allclose(log_f0, [0.0, math.log(100.0), 0.0, math.log(200.0)], rtol=1e-6)
    np.testing.assert_array_equal(voiced, [0, 1, 0, 1])
    t_log, t_voiced = log_f0_and_voicing(torch.from_numpy(f0).unsqueeze(0))
    assert isinstance(t_log, torch.Tensor) and t_log.shape == (1, 4)
    np.testing.assert_allclose(t_log[0].numpy(), log_f0, rtol=1e-6)
    np.testing.assert_array_equal(t_voiced[0].numpy(), voiced)


def test_log_f0_stats() -> None:
    tracks = [np.array([0, 100, 100], np.float32), np.array([400, 0], np.float32), np.zeros(3, np.float32)]
    mean, std, count = log_f0_stats(tracks)
    logs = np.log([100.0, 100.0, 400.0])
    assert count == 3 and mean == pytest.approx(logs.mean()) and std == pytest.approx(logs.std())
    assert log_f0_stats([np.zeros(4, np.float32)]) == (None, None, 0)


def test_store_reader(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="meta.json is missing"):
        F0Store(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(DataError, match=F0_FORMAT):
        F0Store(tmp_path)
    cfg = F0Config(hop_seconds=0.005)
    write_f0(tmp_path, "u1", np.array([0, 120.5, 130], np.float64))
    write_meta(tmp_path, cfg, num_utterances=1, log_f0_mean=4.8, log_f0_std=0.1)
    store = F0Store(tmp_path)
    assert store.hop_seconds == 0.005 and store.config == cfg
    assert (store.log_f0_mean, store.log_f0_std) == (4.8, 0.1)
    got = store.get("u1")
    assert got.dtype == np.float32 and got.tolist() == [0.0, 120.5, 130.0]
    assert "u1" in store and "u2" not in store and "../u1" not in store and store.ids() == ["u1"]
    with pytest.raises(DataError, match=r"u2\.npy.*no F0 track"):
        store.get("u2")
    (tmp_path / "f0" / "u3.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"u3\.npy: unreadable"):
        store.get("u3")
    write_meta(tmp_path, cfg, num_utterances=0, log_f0_mean=None, log_f0_std=None)
    assert math.isnan(F0Store(tmp_path).log_f0_mean)
