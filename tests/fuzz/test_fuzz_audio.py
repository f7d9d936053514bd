"""Fuzzing of the binary audio readers: :func:`speechunits.audio.load_audio` and :func:`audio_info`.

Valid WAV (PCM_16 mono, FLOAT stereo) and FLAC files are written by the project's writer
(:func:`speechunits.audio.write_audio`) and by soundfile, then damaged: truncated at random offsets,
cut to the header, RIFF/data chunk sizes rewritten, channel count / sample rate / frame fields set
to 0 or absurd values, random bytes flipped in the header and in the sample data. The property:
every input either loads as a sane waveform (1-D float32, finite, as long as the header says) or
raises :class:`~speechunits.errors.AudioError` (a :class:`SpeechUnitsError`) naming the file; no
other exception, no hang. Deterministic (``derandomize=True``): 150 generated (base file,
mutation) cases, 3 x 60 cuts inside the header, plus explicit regression tests (empty,
header-only, metadata-only FLAC, zero channels, zero rate, absurd data size, NaN/inf float
data); about 2 s on one core.
"""

from __future__ import annotations

import itertools
import sys
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from speechunits.audio import audio_info, load_audio, write_audio
from speechunits.errors import AudioError, SpeechUnitsError
from synthetic_inputs import SR, corrupt_flac, speechlike

sys.path.insert(0, str(Path(__file__).parent))
from mutations import fuzz_settings  # noqa: E402

FUZZ = fuzz_settings(150, 5000, HealthCheck.function_scoped_fixture)
_counter = itertools.count()


def _bases(tmp: Path) -> dict[str, bytes]:
    """Valid files as bytes: the project's WAV writer, a float stereo WAV, soundfile's FLAC."""
    wav = speechlike(0.1, 3)
    write_audio(tmp / "pcm16.wav", wav, SR)
    write_audio(tmp / "float_stereo.wav", np.stack([wav, -wav], axis=1), 8000, subtype="FLOAT")
    sf.write(tmp / "mono.flac", wav, SR, format="FLAC")
    return {n: (tmp / n).read_bytes() for n in ("pcm16.wav", "float_stereo.wav", "mono.flac")}


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    tmp = tmp_path_factory.mktemp("fuzz_audio")
    return tmp, _bases(tmp)


def _u32(data: bytearray, at: int, value: int) -> None:
    if at + 4 <= len(data):
        data[at:at + 4] = struct.pack("<I", value & 0xFFFFFFFF)


def _u16(data: bytearray, at: int, value: int) -> None:
    if at + 2 <= len(data):
        data[at:at + 2] = struct.pack("<H", value & 0xFFFF)


# A mutation is (kind, position fraction, value); applied to whichever base file is drawn.
MUTATION = st.tuples(
    st.sampled_from(["truncate", "header_only", "riff_size", "data_size", "channels", "rate",
                     "flip_header", "flip_data", "flac_total", "multi_flip"]),
    st.floats(0.0, 1.0, allow_nan=False),
    st.sampled_from([0, 1, 2, 7, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0, 10**9, 44, 3]),
    st.integers(0, 2**32 - 1),
)


def mutate(name: str, data: bytes, kind: str, frac: float, value: int, seed: int) -> bytes:
    """One damaged copy of a valid file (WAV offsets: RIFF size 4, channels 22, rate 24, data size 40;
    the project's writers emit the canonical 44-byte header; FLAC STREAMINFO starts at 8)."""
    d = bytearray(data)
    rng = np.random.default_rng(seed)
    is_wav = name.endswith(".wav")
    header = 44 if is_wav else 42
    if kind == "truncate":
        return bytes(d[:int(frac * len(d))])
    if kind == "header_only":
        return bytes(d[:header])
    if kind == "riff_size" and is_wav:
        _u32(d, 4, value)
    elif kind == "data_size" and is_wav:
        _u32(d, 40, value)
    elif kind == "channels":
        if is_wav:
            _u16(d, 22, value)
        else:  # FLAC STREAMINFO: 20-bit rate, 3-bit channels-1, 5-bit bps-1, 36-bit total samples
            d[20] = (d[20] & 0xF1) | ((value & 7) << 1)
    elif kind == "rate":
        if is_wav:
            _u32(d, 24, value)
        else:
            packed = int.from_bytes(d[18:26], "big")
            packed = (packed & ((1 << 44) - 1)) | ((value & 0xFFFFF) << 44)
            d[18:26] = packed.to_bytes(8, "big")
    elif kind == "flac_total" and not is_wav:
        packed = int.from_bytes(d[18:26], "big")
        d[18:26] = ((packed & ~((1 << 36) - 1)) | (value & ((1 << 36) - 1))).to_bytes(8, "big")
    elif kind == "flip_header":
        at = int(frac * (header - 1))
        d[at] ^= 1 + (seed % 255)
    elif kind == "flip_data":
        at = header + int(frac * (len(d) - header - 1))
        d[at] ^= 1 + (seed % 255)
    else:  # multi_flip (also the fallback of WAV-only kinds on FLAC and vice versa)
        for at in rng.integers(0, len(d), size=1 + seed % 16):
            d[int(at)] ^= int(rng.integers(1, 256))
    return bytes(d)


def check_loads_or_audio_error(path: Path) -> None:
    """The property: a sane waveform, or AudioError naming ``path``; nothing else."""
    try:
        info = audio_info(path)
    except SpeechUnitsError as err:
        assert isinstance(err, AudioError), repr(err)
        assert str(path) in str(err), str(err)
        info = None
    try:
        wav = load_audio(path, target_sr=None)
    except SpeechUnitsError as err:
        assert isinstance(err, AudioError), repr(err)
        assert str(path) in str(err), str(err)
        return
    assert info is not None, "load_audio succeeded where audio_info failed"
    assert isinstance(wav, np.ndarray) and wav.ndim == 1 and wav.dtype == np.float32
    assert wav.size == info.num_samples > 0
    assert np.isfinite(wav).all()
    assert info.sample_rate > 0 and info.channels > 0


@pytest.mark.timeout(60)
@FUZZ
@given(base=st.sampled_from(["pcm16.wav", "float_stereo.wav", "mono.flac"]), mutation=MUTATION)
def test_fuzz_damaged_audio_loads_or_raises_audio_error(bases, base: str, mutation) -> None:
    tmp, files = bases
    path = tmp / f"case{next(_counter)}_{base}"
    path.write_bytes(mutate(base, files[base], *mutation))
    check_loads_or_audio_error(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("base", ["pcm16.wav", "float_stereo.wav", "mono.flac"])
def test_every_truncation_offset_of_the_header(bases, base: str) -> None:
    """Every cut inside the header (and the first bytes after it) is an error or a sane load."""
    tmp, files = bases
    for cut in range(0, 60):
        path = tmp / f"cut{cut}_{base}"
        path.write_bytes(files[base][:cut])
        check_loads_or_audio_error(path)


def _expect_error(path: Path, match: str | None = None) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(path, target_sr=None)
    assert str(path) in str(info.value)
    if match:
        assert match in str(info.value), str(info.value)
    return info.value


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect_error(path, "empty")
    with pytest.raises(AudioError, match="empty"):
        audio_info(path)


@pytest.mark.parametrize("base", ["pcm16.wav", "float_stereo.wav", "mono.flac"])
def test_header_only_file_is_not_empty_audio(bases, base: str) -> None:
    """A file cut right after its header must not load as 0 samples of audio."""
    tmp, files = bases
    path = tmp / f"headeronly_{base}"
    path.write_bytes(mutate(base, files[base], "header_only", 0.0, 0, 0))
    _expect_error(path)
    with pytest.raises(AudioError):
        audio_info(path)


def test_flac_cut_exactly_after_its_metadata(bases) -> None:
    """Regression (found by this fuzzer): a FLAC holding only its metadata blocks (STREAMINFO with the
    true length, then nothing) was reported by audio_info as 1600 samples; both readers now refuse it."""
    from speechunits.audio import _flac_metadata_end

    tmp, files = bases
    full = tmp / "mono.flac"
    end = _flac_metadata_end(full)
    assert end is not None and end < full.stat().st_size
    path = tmp / "metadata_only.flac"
    path.write_bytes(files["mono.flac"][:end])
    for read in (audio_info, load_audio):
        with pytest.raises(AudioError, match="no audio frames") as err:
            read(path)
        assert str(path) in str(err.value)
        pipe = f"cat {path} |"  # the same bytes from a wav.scp pipe command
        with pytest.raises(AudioError, match="no audio frames") as err:
            read(pipe)
        assert pipe in str(err.value)


def test_zero_channels_and_zero_rate(bases) -> None:
    tmp, files = bases
    for kind in ("channels", "rate"):
        for base in ("pcm16.wav", "mono.flac"):
            path = tmp / f"zero_{kind}_{base}"
            path.write_bytes(mutate(base, files[base], kind, 0.0, 0, 0))
            check_loads_or_audio_error(path)
        path = tmp / f"zero_{kind}_pcm16.wav"
        _expect_error(path)  # a WAV with 0 channels or 0 Hz is never usable


def test_absurd_data_size_is_truncation(bases) -> None:
    tmp, files = bases
    path = tmp / "absurd.wav"
    path.write_bytes(mutate("pcm16.wav", files["pcm16.wav"], "data_size", 0.0, 10**9, 0))
    _expect_error(path, "truncated")


def test_flac_with_unknown_length_and_cut(tmp_path: Path) -> None:
    path = corrupt_flac(tmp_path / "bad.flac")
    _expect_error(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_float_wav(tmp_path: Path, bad: float) -> None:
    wav = speechlike(0.05, 1)
    wav[17] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, wav, SR, subtype="FLOAT")  # write_audio refuses non-finite data, as it should
    _expect_error(path, "non-finite")
    assert audio_info(path).num_samples == wav.size  # the header itself is fine
