"""Audio I/O: the one place that reads, writes, resamples and validates waveforms.

Reading and writing use soundfile (libsndfile); resampling uses
``torchaudio.functional.resample``. Every problem with an audio input (missing file,
non-audio file, empty or truncated file, a header claiming more samples than the file can
hold, NaN/inf samples, failing ``wav.scp`` pipe command) is raised as :class:`speechunits.errors.AudioError` naming the file (or the
command) and the problem. Multi-channel audio is mixed to mono and other sample rates are
resampled, never rejected.

An ``audio`` string ending in ``|`` is a Kaldi ``wav.scp`` pipe command (for example
``"sox a.flac -t wav - |"``): it is run through the shell and its standard output is read
as an audio file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from speechunits.errors import AudioError
from speechunits.io_utils import atomic_path

PathLike = str | os.PathLike[str]

_WAV_SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF, 0x7FFFFFFF)  # written by streaming writers (sox to a pipe)

MAX_FRAMES_PER_BYTE = 65536
"""No file libsndfile reads packs more frames than this into one byte. FLAC is the densest:
a block of at most 65535 samples costs at least ~10 bytes (frame header, a constant subframe,
CRC), i.e. at most ~6500 frames per byte; Ogg/Opus/MP3 stay far below. A header claiming more
frames than ``bytes * MAX_FRAMES_PER_BYTE`` has a damaged or unknown length field."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (at its own sample rate)."""

    num_samples: int
    sample_rate: int
    channels: int
    duration: float
    format: str


def is_pipe_command(audio: PathLike) -> bool:
    """True when ``audio`` is a Kaldi ``wav.scp`` pipe command (ends with ``|``)."""
    return isinstance(audio, str) and audio.rstrip().endswith("|")


def _run_pipe(command: str) -> bytes:
    """Run a ``wav.scp`` pipe command and return its standard output."""
    shell_cmd = command.rstrip()[:-1].strip()
    try:
        proc = subprocess.run(shell_cmd, shell=True, capture_output=True, check=False)
    except OSError as err:
        raise AudioError(command, f"could not run the pipe command: {err}") from err
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {stderr[-1]}" if stderr else ""
        raise AudioError(command, f"pipe command failed with exit status {proc.returncode}{detail}")
    if not proc.stdout:
        raise AudioError(command, "pipe command wrote no audio (empty standard output)")
    return proc.stdout


def _check_file(path: Path) -> None:
    """Raise AudioError for a missing, non-regular or zero-byte file."""
    if not path.exists():
        raise AudioError(path, "audio file does not exist")
    if not path.is_file():
        raise AudioError(path, "expected an audio file, found a directory or special file")
    if path.stat().st_size == 0:
        raise AudioError(path, "audio file is empty (0 bytes)")


def _declared_wav_data_bytes(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: (data-chunk size declared in the header, bytes present after it).

    None when the file is not a plain RIFF WAVE, has no data chunk header, or declares a
    streaming placeholder size.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if size in _WAV_SIZE_PLACEHOLDERS:
                    return None
                present = path.stat().st_size - f.tell()
                return size, present
            f.seek(size + (size & 1), os.SEEK_CUR)


def _flac_metadata_end(source: Path | io.BytesIO) -> int | None:
    """For a native FLAC file (a path, or a pipe command's output): the byte offset where its metadata
    blocks end (audio frames start); past the end when it is cut inside them. None when not native FLAC."""
    with (open(source, "rb") if isinstance(source, Path) else io.BytesIO(source.getbuffer())) as f:
        if f.read(4) != b"fLaC":
            return None
        pos = 4
        while True:
            block = f.read(4)
            if len(block) < 4:
                return pos + 4
            pos += 4 + int.from_bytes(block[1:4], "big")
            if block[0] & 0x80:  # last-metadata-block flag
                return pos
            f.seek(pos)


def _check_flac_has_frames(source: Path | io.BytesIO, name: str) -> None:
    """Raise AudioError when a FLAC file ends within or right after its metadata: libsndfile
    reports STREAMINFO's length for such a header-only file as if the audio were there."""
    end = _flac_metadata_end(source)
    size = _source_bytes(source)
    if end is not None and end >= size:
        raise AudioError(name, f"truncated FLAC file: its {size} bytes end {'with' if end == size else 'inside'} "
                               "its metadata header, holding no audio frames")


def _check_not_truncated(path: Path) -> None:
    """Raise AudioError when a WAV header declares more sample data than the file holds.

    libsndfile silently clamps such files to the bytes present, so this is checked here.
    """
    declared = _declared_wav_data_bytes(path)
    if declared is not None and declared[1] < declared[0]:
        raise AudioError(
            path,
            f"truncated WAV file: header declares {declared[0]} bytes of sample data, "
            f"the file holds {declared[1]}",
        )


def _open_source(audio: PathLike) -> tuple[Any, str]:
    """Return (something soundfile can open, name to use in errors) after basic checks."""
    if is_pipe_command(audio):
        command = str(audio)
        return io.BytesIO(_run_pipe(command)), command
    path = Path(audio)
    _check_file(path)
    _check_not_truncated(path)
    return path, str(path)


def _source_bytes(source: Any) -> int:
    """Size in bytes of an opened source (a path, or the BytesIO of a pipe command's output)."""
    return source.getbuffer().nbytes if isinstance(source, io.BytesIO) else Path(source).stat().st_size


def _sf_info(source: Any, name: str) -> Any:
    """soundfile's header facts, checked: at least one frame, and no more than the bytes can hold.

    libsndfile reports a FLAC whose STREAMINFO total-samples field is 0 ("unknown") as 2**63 - 1
    frames (576460752303423.5 s at 16 kHz); such a length can be neither planned nor read, so
    it is refused here, naming the file, like every other unusable header.
    """
    try:
        info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(name, f"not a readable audio file ({err})") from err
    if info.frames <= 0:
        raise AudioError(name, "audio file holds no samples (0 frames)")
    size = _source_bytes(source)
    if info.frames > size * MAX_FRAMES_PER_BYTE:
        raise AudioError(name, f"header claims {info.frames} frames ({info.frames / info.samplerate:.1f} s) but the "
                               f"file holds only {size} bytes: its length field is damaged or unknown")
    _check_flac_has_frames(source if isinstance(source, io.BytesIO) else Path(source), name)
    return info


def audio_info(path: PathLike) -> AudioInfo:
    """Header information of an audio file or ``wav.scp`` pipe command."""
    source, name = _open_source(path)
    info = _sf_info(source, name)
    return AudioInfo(
        num_samples=int(info.frames),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        duration=float(info.frames) / float(info.samplerate),
        format=str(info.format),
    )


def validate_waveform(wav: np.ndarray, path: PathLike) -> None:
    """Raise AudioError unless ``wav`` is a non-empty, finite, 1-D float waveform."""
    if not isinstance(wav, np.ndarray):
        raise AudioError(path, f"expected a numpy waveform, found {type(wav).__name__}")
    if wav.ndim != 1:
        raise AudioError(path, f"expected a 1-D mono waveform, found shape {tuple(wav.shape)}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise AudioError(path, f"expected a floating-point waveform, found dtype {wav.dtype}")
    if wav.size == 0:
        raise AudioError(path, "audio is empty (0 samples)")
    finite = np.isfinite(wav)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if np.isnan(wav[bad]) else "infinite"
        raise AudioError(
            path, f"audio contains {int((~finite).sum())} non-finite samples (first: {kind} at sample {bad})"
        )


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Length :func:`resample` gives for ``num_samples`` samples (torchaudio's arithmetic: ceil of the reduced ratio)."""
    if orig_sr == target_sr:
        return num_samples
    import torch

    gcd = math.gcd(orig_sr, target_sr)
    return int(torch.ceil(torch.as_tensor((target_sr // gcd) * num_samples / (orig_sr // gcd))).item())


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D float waveform from ``orig_sr`` to ``target_sr`` (float32 result)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == target_sr:
        return wav
    import torch
    import torchaudio.functional as taf

    out = taf.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, target_sr)
    return out.numpy().astype(np.float32, copy=False)


def _frame_range(
    name: str, sample_rate: int, total: int, offset_s: float | None, duration_s: float | None
) -> tuple[int, int]:
    """(start, num_frames) for an offset/duration request, checked against the file length."""
    start = int(round((offset_s or 0.0) * sample_rate))
    if start < 0 or start >= total:
        raise AudioError(name, f"offset {offset_s} s is outside the audio ({total / sample_rate:.3f} s long)")
    if duration_s is None:
        return start, total - start
    if duration_s <= 0:
        raise AudioError(name, f"requested duration must be positive, got {duration_s} s")
    return start, min(int(round(duration_s * sample_rate)), total - start)


def load_audio(
    path: PathLike,
    target_sr: int | None = 16000,
    *,
    offset_s: float | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Read an audio file (or ``wav.scp`` pipe command) as a float32 mono 1-D waveform.

    Multi-channel audio is averaged to mono; the result is resampled to ``target_sr``
    (``None`` keeps the file's rate). ``offset_s``/``duration_s`` select a span (in seconds
    of the file). Raises AudioError for every unusable input.
    """
    source, name = _open_source(path)
    info = _sf_info(source, name)
    start, frames = _frame_range(name, info.samplerate, info.frames, offset_s, duration_s)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        data, sr = sf.read(source, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(name, f"could not decode audio, truncated or corrupt file ({err})") from err
    if data.shape[0] < frames:
        raise AudioError(name, f"truncated audio: header declares {frames} frames from {start}, read {data.shape[0]}")
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    validate_waveform(wav, name)
    if target_sr is not None and sr != target_sr:
        wav = resample(wav, sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def write_audio(path: PathLike, wav: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write a waveform atomically; the format comes from the suffix (.wav PCM_16 default, .flac).

    ``wav`` is 1-D (mono) or 2-D ``(frames, channels)``; it must be finite and non-empty.
    """
    path = Path(path)
    wav = np.asarray(wav)
    if wav.ndim not in (1, 2):
        raise AudioError(path, f"expected a 1-D or (frames, channels) waveform, found shape {tuple(wav.shape)}")
    validate_waveform(wav.reshape(-1).astype(np.float32, copy=False), path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, f"unsupported audio suffix {path.suffix!r}: expected .wav or .flac")
    subtype = subtype or "PCM_16"
    with atomic_path(path) as tmp:
        try:
            sf.write(tmp, wav, sample_rate, subtype=subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
            raise AudioError(path, f"could not write audio ({err})") from err
