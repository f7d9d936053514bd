"""Tests of speechunits.audio: loading, resampling, validation errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits import audio as audio_mod
from speechunits.audio import AudioInfo, audio_info, load_audio, resample, validate_waveform, write_audio
from speechunits.errors import AudioError
from synthetic_inputs import corrupt_flac


def _tone(n: int, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(n) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture()
def wav16k(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(8000, 16000), 16000, subtype="PCM_16")
    return path


def test_load_and_info_mono(wav16k: Path) -> None:
    wav = load_audio(wav16k)
    assert wav.dtype == np.float32 and wav.shape == (8000,)
    np.testing.assert_allclose(wav, _tone(8000, 16000), atol=1e-4)
    info = audio_info(wav16k)
    assert info == AudioInfo(num_samples=8000, sample_rate=16000, channels=1, duration=0.5, format="WAV")


def test_stereo_44k_comes_back_mono_16k(tmp_path: Path) -> None:
    sr, n = 44100, 44100  # 1 s
    left, right = _tone(n, sr, 300.0), _tone(n, sr, 500.0)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    wav = load_audio(path, 16000)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert wav.shape[0] == 16000
    expected = resample((left + right) / 2, sr, 16000)
    np.testing.assert_allclose(wav, expected, atol=2e-3)
    assert audio_info(path).channels == 2
    assert load_audio(path, None).shape == (n,)


def test_offset_and_duration(wav16k: Path) -> None:
    full = load_audio(wav16k)
    part = load_audio(wav16k, offset_s=0.1, duration_s=0.2)
    np.testing.assert_array_equal(part, full[1600:4800])
    with pytest.raises(AudioError, match="outside the audio"):
        load_audio(wav16k, offset_s=2.0)


def test_resample_length_and_identity() -> None:
    x = _tone(16000, 16000)
    assert resample(x, 16000, 8000).shape == (8000,)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)


def test_pipe_command(wav16k: Path) -> None:
    wav = load_audio(f"cat {wav16k} |")
    np.testing.assert_array_equal(wav, load_audio(wav16k))
    assert audio_info(f"cat {wav16k} |").num_samples == 8000


def test_failing_pipe_command_names_the_command(tmp_path: Path) -> None:
    cmd = f"cat {tmp_path / 'absent.wav'} |"
    with pytest.raises(AudioError, match="pipe command failed") as err:
        load_audio(cmd)
    assert "absent.wav" in str(err.value)


# ----------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="does not exist") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(AudioError, match="not a readable audio file") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="0 frames|0 samples|0 bytes") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_zero_byte_flac(tmp_path: Path) -> None:
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as err:
        audio_info(path)
    assert str(path) in str(err.value)


def test_truncated_wav(tmp_path: Path, wav16k: Path) -> None:
    data = wav16k.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated") as err:
        load_audio(path)
    assert str(path) in str(err.value)
    with pytest.raises(AudioError, match="truncated"):
        audio_info(path)


def test_truncated_flac(tmp_path: Path) -> None:
    full = tmp_path / "full.flac"
    sf.write(full, np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32), 16000)
    path = tmp_path / "cut.flac"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AudioError, match="truncated") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_flac_header_claiming_absurd_length(tmp_path: Path) -> None:
    """A cut FLAC whose STREAMINFO total-samples is 0: libsndfile says 2**63 - 1 frames in 86 bytes."""
    path = corrupt_flac(tmp_path / "bad.flac")
    assert path.stat().st_size == 86 and sf.info(str(path)).duration == 576460752303423.5
    for read in (audio_info, load_audio):
        with pytest.raises(AudioError, match=r"bad\.flac: header claims 9223372036854775807 frames .* 86 bytes"):
            read(path)
    # a pipe command printing such a file is refused the same way
    with pytest.raises(AudioError, match="header claims"):
        audio_info(f"cat {path} |")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path: Path, bad: float) -> None:
    x = _tone(1600, 16000)
    x[100] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite") as err:
        load_audio(path)
    assert str(path) in str(err.value) and "sample 100" in str(err.value)


def test_validate_waveform_shapes() -> None:
    with pytest.raises(AudioError, match="1-D"):
        validate_waveform(np.zeros((2, 10), dtype=np.float32), "x.wav")
    with pytest.raises(AudioError, match="0 samples"):
        validate_waveform(np.zeros(0, dtype=np.float32), "x.wav")
    with pytest.raises(AudioError, match="floating"):
        validate_waveform(np.zeros(10, dtype=np.int16), "x.wav")
    validate_waveform(np.zeros(10, dtype=np.float32), "x.wav")


# ----------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_roundtrip(tmp_path: Path, suffix: str) -> None:
    x = _tone(4000, 16000)
    path = tmp_path / f"out{suffix}"
    write_audio(path, x, 16000)
    assert audio_info(path).num_samples == 4000
    np.testing.assert_allclose(load_audio(path), x, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


def test_write_rejects_nan_and_bad_suffix(tmp_path: Path) -> None:
    x = _tone(100, 16000)
    x[3] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        write_audio(tmp_path / "a.wav", x, 16000)
    with pytest.raises(AudioError, match="suffix"):
        write_audio(tmp_path / "a.mp4", _tone(100, 16000), 16000)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.wav"
    write_audio(path, _tone(1000, 16000), 16000)
    before = path.read_bytes()

    def half_write(file: Path, data: np.ndarray, sr: int, **kw: object) -> None:
        Path(file).write_bytes(b"RIFF partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio_mod.sf, "write", half_write)
    with pytest.raises(AudioError, match="disk full"):
        write_audio(path, _tone(2000, 16000), 16000)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]
