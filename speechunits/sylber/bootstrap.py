"""Acoustic bootstrap syllable segmenter (Sylber stage 1 without SD-HuBERT segments).

A classical sonority-envelope segmenter in the spirit of Mermelstein (1975):

1. **Band-limited energy.** The waveform is band-passed (default 300-3000 Hz, where vowel
   formants carry the sonority; fricative noise mostly lies above) with a zero-phase
   Butterworth filter and squared.
2. **Frame grid.** Power is averaged per frame at 50 Hz with hop 320 at 16 kHz: frame ``i``
   covers samples ``[320 i, 320 (i + 1))``, the frame grid of the HuBERT/Sylber model. An
   utterance of ``n`` samples has ``n // 320`` frames (a trailing partial frame is dropped,
   never padded). Every output index refers to this grid.
3. **Envelope.** The per-frame power is smoothed with a Gaussian (``smooth_ms``) and turned
   into dB: the loudness-like envelope.
4. **Speech/silence.** A frame is speech when its *unsmoothed* band power (dB re full scale
   for float audio in [-1, 1]) is within ``silence_db`` of the utterance's level (the
   ``level_percentile``-th percentile) and above the absolute ``floor_db`` (so digital silence
   is never speech). The raw power keeps speech edges sharp; smoothing would smear them.
   Pauses shorter than ``min_pause_ms`` (stop closures, hesitations inside a word) are
   bridged: they stay inside the speech run, and their dip becomes an ordinary valley.
5. **Nuclei.** Envelope peaks inside speech with a prominence of at least
   ``min_prominence_db``; prominence is the depth of the deeper-of-the-two surrounding
   valleys, the 1-D analogue of Mermelstein's convex-hull depth. A speech run without a
   prominent peak gets one nucleus at its maximum.
6. **Boundaries** at the envelope minimum between consecutive nuclei of a speech run; the run
   edges bound the first and last syllable, so silence gaps are left out.
7. **Minimum duration.** A syllable shorter than ``min_syllable_ms`` is merged into the
   touching neighbour across the shallower valley; an isolated speech run shorter than that
   is dropped.

Output: an (N, 2) int64 array of ``[start, end)`` frames, sorted, non-overlapping. Steps 1-6
are vectorised numpy/scipy (an hour of audio takes a few seconds); step 7 loops within each
speech run only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, find_peaks, resample_poly, sosfiltfilt

SAMPLE_RATE = 16000
HOP = 320
FRAME_RATE = SAMPLE_RATE / HOP  # 50 Hz


@dataclass(frozen=True)
class BootstrapConfig:
    """Hyper-parameters of the acoustic segmenter (defaults tuned on synthetic train data)."""

    band_low_hz: float = 300.0
    band_high_hz: float = 3000.0
    filter_order: int = 4
    smooth_ms: float = 15.0
    silence_db: float = 40.0
    level_percentile: float = 95.0
    min_prominence_db: float = 1.5
    min_syllable_ms: float = 60.0
    floor_db: float = -90.0
    min_pause_ms: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.band_low_hz < self.band_high_hz < SAMPLE_RATE / 2:
            raise ValueError(f"need 0 < band_low_hz < band_high_hz < {SAMPLE_RATE / 2}, got "
                             f"{self.band_low_hz}, {self.band_high_hz}")
        for name in ("smooth_ms", "silence_db", "min_prominence_db", "min_syllable_ms", "min_pause_ms"):  # floor_db may be < 0
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.level_percentile <= 100:
            raise ValueError(f"level_percentile must be in (0, 100], got {self.level_percentile}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for meta.json / provenance)."""
        return asdict(self)


@functools.lru_cache(maxsize=8)
def _bandpass(low: float, high: float, order: int) -> np.ndarray:
    return butter(order, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")


def frame_power(wave: np.ndarray, config: BootstrapConfig) -> np.ndarray:
    """Mean band-passed power per 320-sample frame of a 16 kHz waveform, shape (n // 320,)."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    num_frames = len(x) // HOP
    if num_frames == 0:
        return np.zeros(0, dtype=np.float64)
    sos = _bandpass(config.band_low_hz, config.band_high_hz, config.filter_order)
    default_pad = 3 * (2 * len(sos) + 1)
    y = sosfiltfilt(sos, x, padlen=min(default_pad, len(x) - 1))
    return np.mean(np.square(y[: num_frames * HOP]).reshape(num_frames, HOP), axis=1)


def envelope_db(power: np.ndarray, config: BootstrapConfig) -> np.ndarray:
    """Gaussian-smoothed frame power in dB (the sonority envelope)."""
    sigma = config.smooth_ms / 1000.0 * FRAME_RATE
    smoothed = gaussian_filter1d(power, sigma, mode="nearest") if sigma > 0 and len(power) else power
    return 10.0 * np.log10(smoothed + 1e-12)


def _runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) index pairs of the True runs of a boolean array, shape (R, 2)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges.reshape(-1, 2)


def _nuclei(env: np.ndarray, runs: np.ndarray, config: BootstrapConfig) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus frames and their run index: prominent peaks, plus the maximum of peakless runs."""
    peaks, _ = find_peaks(env, prominence=config.min_prominence_db)
    run_of_frame = np.full(len(env), -1, dtype=np.int64)
    for r, (a, b) in enumerate(runs):  # one slice assignment per speech run
        run_of_frame[a:b] = r
    peaks = peaks[run_of_frame[peaks] >= 0]
    peak_runs = run_of_frame[peaks]
    empty = np.setdiff1d(np.arange(len(runs)), peak_runs)
    extra = np.array([a + int(np.argmax(env[a:b])) for a, b in runs[empty]], dtype=np.int64)
    nuclei = np.concatenate((peaks, extra)).astype(np.int64)
    order = np.argsort(nuclei, kind="stable")
    return nuclei[order], run_of_frame[nuclei[order]]


def speech_mask(power: np.ndarray, config: BootstrapConfig) -> np.ndarray:
    """Boolean speech mask per frame from the unsmoothed frame power."""
    if len(power) == 0:
        return np.zeros(0, dtype=bool)
    db = 10.0 * np.log10(power + 1e-12)
    level = np.percentile(db, config.level_percentile)
    mask = (db > level - config.silence_db) & (db > config.floor_db)
    min_pause = int(round(config.min_pause_ms / 1000.0 * FRAME_RATE))
    gaps = _runs(~mask)
    inner = gaps[(gaps[:, 0] > 0) & (gaps[:, 1] < len(mask)) & (gaps[:, 1] - gaps[:, 0] < min_pause)]
    for a, b in inner:  # one slice per short inner pause
        mask[a:b] = True
    return mask


def segment_power(power: np.ndarray, config: BootstrapConfig = BootstrapConfig()) -> np.ndarray:
    """Syllable segments (N, 2) int64 [start, end) frames from per-frame band power (50 Hz grid)."""
    if len(power) == 0 or not np.all(np.isfinite(power)):
        return np.zeros((0, 2), dtype=np.int64)
    env = envelope_db(power, config)
    runs = _runs(speech_mask(power, config))
    if len(runs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    nuclei, nucleus_run = _nuclei(env, runs, config)
    # valleys between consecutive nuclei of the same run
    same_run = nucleus_run[1:] == nucleus_run[:-1]
    left, right = nuclei[:-1][same_run], nuclei[1:][same_run]
    valleys = np.array([a + int(np.argmin(env[a:b + 1])) for a, b in zip(left, right)], dtype=np.int64)
    starts = np.concatenate((runs[:, 0], valleys))
    ends = np.concatenate((valleys, runs[:, 1]))
    segments = np.stack((np.sort(starts), np.sort(ends)), axis=1)
    segments = segments[segments[:, 1] > segments[:, 0]]
    min_frames = int(round(config.min_syllable_ms / 1000.0 * FRAME_RATE))
    return _enforce_min_duration(segments, env, min_frames)


def _enforce_min_duration(segments: np.ndarray, env: np.ndarray, min_frames: int) -> np.ndarray:
    """Merge too-short syllables into a touching neighbour across the shallower valley; drop isolated ones.

    Works run by run (maximal groups of touching segments), so the cost stays linear in the
    number of runs however long the recording is.
    """
    if len(segments) == 0:
        return segments.reshape(0, 2).astype(np.int64)
    breaks = np.flatnonzero(segments[1:, 0] != segments[:-1, 1]) + 1
    kept: list[list[int]] = []
    for group in np.split(segments, breaks):
        kept.extend(_merge_short_in_run([[int(a), int(b)] for a, b in group], env, min_frames))
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


def _merge_short_in_run(segs: list[list[int]], env: np.ndarray, min_frames: int) -> list[list[int]]:
    """Within one run of touching segments, repeatedly absorb the shortest too-short segment."""
    while segs:
        lengths = [e - s for s, e in segs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_frames:
            break
        if len(segs) == 1:
            return []
        s, e = segs[i]
        # the boundary with the higher envelope value is the weaker one
        left_level = env[s] if i > 0 else -math.inf
        right_level = env[min(e, len(env) - 1)] if i + 1 < len(segs) else -math.inf
        if left_level >= right_level:
            segs[i - 1][1] = e
        else:
            segs[i + 1][0] = s
        del segs[i]
    return segs


def bootstrap_segments(
    wave: np.ndarray, sample_rate: int = SAMPLE_RATE, config: BootstrapConfig = BootstrapConfig()
) -> np.ndarray:
    """Syllable segments of a mono waveform: (N, 2) int64 [start, end) frames at 50 Hz.

    Audio at another rate is resampled to 16 kHz first (polyphase), so frames always refer to
    the 16 kHz / hop 320 grid.
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        g = math.gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g)
    return segment_power(frame_power(x, config), config)


class AcousticSegmenter:
    """Callable wrapper: ``AcousticSegmenter(config)(wave, sample_rate) -> (N, 2) frames``."""

    def __init__(self, config: BootstrapConfig | None = None) -> None:
        self.config = config or BootstrapConfig()

    def __call__(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return bootstrap_segments(wave, sample_rate, self.config)
