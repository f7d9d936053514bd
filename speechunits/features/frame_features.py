"""MFCC and log-mel frames on a speech encoder's frame grid (HuBERT iteration-1 targets, probe baselines).

A HuBERT-style conv stack turns ``S`` samples into ``T = floor((S - window) / hop) + 1``
frames, frame ``i`` seeing samples ``[i * hop, i * hop + window)`` (400 and 320 for HuBERT
base at 16 kHz: 25 ms windows every 20 ms). The features here use exactly that grid: an
STFT of ``window`` samples (Hann window, ``n_fft = window``) every ``hop`` samples, **no
centre padding**, so frame ``i`` of these features is frame ``i`` of the encoder (the test
suite checks the count against ``speechunits.encoders.model.conv_output_lengths``).
:func:`frame_grid` gives ``(window, hop)`` of any conv stack.

* **MFCC** (:func:`mfcc_frames`): ``n_mfcc`` (13) coefficients of the natural log of a
  :data:`MFCC_MEL_BANDS`-band HTK mel power spectrum (orthonormal DCT-II, torchaudio's
  ``MFCC(log_mels=True)``), plus delta and delta-delta (``torchaudio.functional.compute_deltas``,
  5-frame regression window, edges replicated): 39 dims, as the MFCC targets of HuBERT's
  first iteration (Hsu et al. 2021; there at 100 Hz, here on the 50 Hz encoder grid).
* **log-mel** (:func:`logmel_frames`): natural log of an ``n_mels``-band (80) HTK mel power
  spectrum plus :data:`LOG_FLOOR`.

Both are **standardised per utterance**: every dimension gets mean 0 and standard deviation
1 over the utterance's frames (population std; a dimension whose std is below
:data:`STD_FLOOR`, e.g. constant over a silent utterance, becomes 0). Padding never reaches
the features: a padded batch is cut to each row's own frames before deltas and statistics,
so a batch gives what one call per utterance gives. (Sylber's ``LogMelTeacher`` takes the same grid from :func:`frame_grid`; its log-mels are
standardised over speech frames only and randomly projected, so it keeps its own extractor.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from speechunits.errors import ConfigError

FEATURE_KINDS: tuple[str, ...] = ("mfcc", "logmel")
MFCC_MEL_BANDS = 40
"""Mel bands under the MFCC's DCT (all 40 have non-empty filters with a 400-point FFT at 16 kHz)."""
LOG_FLOOR = 1e-6
"""Added to mel power before the log."""
STD_FLOOR = 1e-5
"""Per-dimension standard deviation below which the standardisation gives 0 instead of dividing."""


def frame_grid(conv_layers: list[tuple[int, int, int]] | list[list[int]]) -> tuple[int, int]:
    """``(window, hop)`` of a stack of unpadded convs ``(channels, kernel, stride)``: receptive field and total stride.

    ``(400, 320)`` for HuBERT/wav2vec2 base (``[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2``).
    """
    if not conv_layers:
        raise ConfigError(None, "frame_grid: the conv stack is empty")
    window, hop = 1, 1
    for _, kernel, stride in reversed([tuple(layer) for layer in conv_layers]):
        window = (window - 1) * int(stride) + int(kernel)
    for _, _, stride in conv_layers:
        hop *= int(stride)
    return window, hop


def num_frames(num_samples: int, window: int = 400, hop: int = 320) -> int:
    """``floor((num_samples - window) / hop) + 1``, or 0 when shorter than one window."""
    return 0 if num_samples < window else (num_samples - window) // hop + 1


@dataclass(frozen=True)
class FrameFeatureConfig:
    """What a frame feature is: its kind and every parameter that changes its values."""

    kind: str = "mfcc"
    window: int = 400
    hop: int = 320
    sample_rate: int = 16000
    n_mfcc: int = 13
    n_mels: int = 80
    deltas: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in FEATURE_KINDS:
            problems.append(f"kind must be one of {list(FEATURE_KINDS)}, got {self.kind!r}")
        if not 0 < self.hop <= self.window:
            problems.append(f"need 0 < hop <= window, got window {self.window}, hop {self.hop}")
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= MFCC_MEL_BANDS:
            problems.append(f"n_mfcc must be in 1..{MFCC_MEL_BANDS}, got {self.n_mfcc}")
        if self.kind == "logmel" and self.n_mels < 1:
            problems.append(f"n_mels must be >= 1, got {self.n_mels}")
        if problems:
            raise ConfigError(None, "frame features: " + "; ".join(problems))

    @property
    def hop_length(self) -> int:
        """The hop in samples (the name :class:`~speechunits.encoders.model.EncoderConfig` uses)."""
        return self.hop

    @property
    def dim(self) -> int:
        """Feature dimension: ``n_mfcc`` x 3 with deltas (39), ``n_mfcc``, or ``n_mels``."""
        if self.kind == "mfcc":
            return self.n_mfcc * (3 if self.deltas else 1)
        return self.n_mels

    def to_dict(self) -> dict[str, Any]:
        """The parameters that define the features (the fields plus fixed constants), JSON-ready."""
        out: dict[str, Any] = asdict(self)
        if self.kind == "mfcc":
            del out["n_mels"]
            out["mel_bands"] = MFCC_MEL_BANDS
        else:
            del out["n_mfcc"], out["deltas"]
        out.update(log_floor=LOG_FLOOR, mel_scale="htk", standardise="utterance")
        return out


def standardise(x: Tensor) -> Tensor:
    """``(T, D)`` -> per-dimension mean 0, std 1 over time (population std); std < :data:`STD_FLOOR` -> 0."""
    if x.shape[0] == 0:
        return x
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, unbiased=False, keepdim=True)
    flat = std < STD_FLOOR
    return torch.where(flat, torch.zeros_like(x), (x - mean) / std.clamp_min(STD_FLOOR))


class FrameFeatureExtractor(nn.Module):
    """Batched MFCC or log-mel frames: ``forward(waveforms (B, S), lengths (B,)) -> (feats (B, T, D), frames (B,))``.

    Padded frames of ``feats`` are zero. It has the attributes
    :class:`~speechunits.encoders.batch.BatchEncoder` reads from an encoder (``config.sample_rate``,
    ``config.hop_length``, ``receptive_field``, ``embed_dim``), so corpus jobs run it through the
    same batched path as a model. No trainable parameters; computed in float32.
    """

    def __init__(self, config: FrameFeatureConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = FrameFeatureConfig(**overrides) if config is None else config
        c = self.config
        mel_kwargs = dict(n_fft=c.window, win_length=c.window, hop_length=c.hop, center=False, power=2.0,
                          mel_scale="htk")
        if c.kind == "mfcc":
            self.transform: nn.Module = torchaudio.transforms.MFCC(
                sample_rate=c.sample_rate, n_mfcc=c.n_mfcc, log_mels=True,
                melkwargs={**mel_kwargs, "n_mels": MFCC_MEL_BANDS})
        else:
            self.transform = torchaudio.transforms.MelSpectrogram(sample_rate=c.sample_rate, n_mels=c.n_mels,
                                                                  **mel_kwargs)

    @property
    def receptive_field(self) -> int:
        """Fewest samples that give one frame: the window."""
        return self.config.window

    @property
    def embed_dim(self) -> int:
        return self.config.dim

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop

    def frame_lengths(self, num_samples: Tensor) -> Tensor:
        """Frames of each length (``floor((S - window) / hop) + 1``, at least 0)."""
        c = self.config
        return torch.clamp(torch.div(num_samples - c.window, c.hop, rounding_mode="floor") + 1, min=0)

    def _spectral(self, waveforms: Tensor) -> Tensor:
        """``(B, S)`` with ``S >= window`` -> ``(B, T, n)``: MFCCs (without deltas) or log-mels."""
        out = self.transform(waveforms)  # (B, n, T)
        if self.config.kind == "logmel":
            out = torch.log(out + LOG_FLOOR)
        return out.transpose(1, 2)

    def _finish(self, frames: Tensor) -> Tensor:
        """One utterance's ``(T, n)`` -> deltas appended (MFCC) and standardised."""
        if self.config.kind == "mfcc" and self.config.deltas:
            first = torchaudio.functional.compute_deltas(frames.T.unsqueeze(0))
            second = torchaudio.functional.compute_deltas(first)
            frames = torch.cat([frames, first[0].T, second[0].T], dim=1)
        return standardise(frames)

    @torch.no_grad()
    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if waveforms.ndim == 1:
            waveforms = waveforms.unsqueeze(0)
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms of shape (B, S), got {tuple(waveforms.shape)}")
        batch, total = waveforms.shape
        device = waveforms.device
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=device)
        lengths = lengths.to(device=device, dtype=torch.long)
        if lengths.shape != (batch,) or bool((lengths > total).any()) or bool((lengths < 0).any()):
            raise ValueError(f"lengths must be (B,) with 0 <= length <= {total}, got {lengths.tolist()}")
        frames = self.frame_lengths(lengths)
        longest = int(frames.max()) if batch else 0
        out = torch.zeros(batch, longest, self.config.dim, dtype=torch.float32, device=device)
        if longest == 0:
            return out, frames
        x = waveforms.float()[:, : (longest - 1) * self.config.hop + self.config.window]
        with torch.autocast(device_type=device.type, enabled=False):
            spectral = self._spectral(x)
        for row in range(batch):
            n = int(frames[row])
            if n:
                out[row, :n] = self._finish(spectral[row, :n])
        return out, frames


@lru_cache(maxsize=8)
def _extractor(config: FrameFeatureConfig) -> FrameFeatureExtractor:
    return FrameFeatureExtractor(config)


def _single(waveform: Tensor, config: FrameFeatureConfig) -> Tensor:
    wave = torch.as_tensor(waveform)
    if wave.ndim != 1:
        raise ValueError(f"expected one waveform of shape (S,), got {tuple(wave.shape)}")
    extractor = _extractor(config)
    if wave.device.type != "cpu":
        extractor = FrameFeatureExtractor(config).to(wave.device)
    feats, frames = extractor(wave.unsqueeze(0))
    return feats[0, : int(frames[0])]


def mfcc_frames(waveform: Tensor, *, window: int = 400, hop: int = 320, sample_rate: int = 16000, n_mfcc: int = 13,
                deltas: bool = True) -> Tensor:
    """``(S,)`` -> ``(T, 3 * n_mfcc)`` standardised MFCC + deltas (``(T, n_mfcc)`` without deltas).

    ``T = floor((S - window) / hop) + 1`` (0 when ``S < window``).
    """
    return _single(waveform, FrameFeatureConfig("mfcc", window, hop, sample_rate, n_mfcc=n_mfcc, deltas=deltas))


def logmel_frames(waveform: Tensor, *, window: int = 400, hop: int = 320, sample_rate: int = 16000,
                  n_mels: int = 80) -> Tensor:
    """``(S,)`` -> ``(T, n_mels)`` standardised log-mel frames, ``T = floor((S - window) / hop) + 1``."""
    return _single(waveform, FrameFeatureConfig("logmel", window, hop, sample_rate, n_mels=n_mels))


__all__ = [
    "FEATURE_KINDS",
    "FrameFeatureConfig",
    "FrameFeatureExtractor",
    "frame_grid",
    "logmel_frames",
    "mfcc_frames",
    "num_frames",
    "standardise",
]
