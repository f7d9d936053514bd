"""MFCC / log-mel frames on the encoder's grid: the frame count equals the HuBERT conv stack's,
frame i sees samples [i*hop, i*hop+window), per-utterance standardisation, deltas, batching."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from speechunits.encoders.model import HUBERT_BASE_CONV, EncoderConfig, SpeechEncoder, conv_output_lengths
from speechunits.errors import ConfigError
from speechunits.features.frame_features import (
    FrameFeatureConfig,
    FrameFeatureExtractor,
    frame_grid,
    logmel_frames,
    mfcc_frames,
    num_frames,
    standardise,
)

SR = 16000


def _speechy(n: int, seed: int = 0) -> torch.Tensor:
    """A tone whose pitch and loudness change over time, plus a little noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / SR
    wave = torch.sin(2 * torch.pi * (200 + 300 * t) * t) * (0.2 + 0.8 * torch.sin(2 * torch.pi * 2 * t).abs())
    return (wave + 0.01 * torch.randn(n, generator=gen, dtype=torch.float64)).float()


def test_frame_grid_of_hubert_and_tiny_stacks() -> None:
    assert frame_grid(HUBERT_BASE_CONV) == (400, 320)
    assert frame_grid(EncoderConfig.tiny().extractor_conv_layer_config) == (400, 320)
    assert frame_grid([(8, 4, 2), (8, 3, 3)]) == (4 + 2 * 2, 6)
    assert frame_grid(HUBERT_BASE_CONV)[0] == SpeechEncoder(EncoderConfig.tiny()).receptive_field
    with pytest.raises(ConfigError, match="empty"):
        frame_grid([])


def test_frame_count_equals_the_conv_stack() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.cat([torch.arange(0, 2500), torch.randint(2500, 10 * SR, (300,), generator=gen)])
    expected = conv_output_lengths(lengths, HUBERT_BASE_CONV)
    ext = FrameFeatureExtractor(kind="mfcc")
    assert torch.equal(ext.frame_lengths(lengths), expected)
    assert [num_frames(int(n)) for n in lengths] == expected.tolist()
    model = SpeechEncoder(EncoderConfig.tiny()).eval()
    for n in (399, 400, 719, 720, 721, 5000, 16077):
        wave = _speechy(n)
        assert mfcc_frames(wave).shape[0] == logmel_frames(wave).shape[0] == model.frame_lengths(n)
        if n >= 400:
            with torch.inference_mode():
                feats, frames = model(wave[None])
            assert feats.shape[1] == int(frames[0]) == mfcc_frames(wave).shape[0], n


def test_shapes_and_per_utterance_standardisation() -> None:
    wave = _speechy(3 * SR)
    for feats, dim in ((mfcc_frames(wave), 39), (logmel_frames(wave), 80), (mfcc_frames(wave, deltas=False), 13),
                       (logmel_frames(wave, n_mels=40), 40)):
        assert feats.shape == (num_frames(3 * SR), dim) and feats.dtype == torch.float32
        assert torch.allclose(feats.mean(0), torch.zeros(dim), atol=1e-4)
        assert torch.allclose(feats.std(0, unbiased=False), torch.ones(dim), atol=1e-3)
    assert mfcc_frames(_speechy(399)).shape == (0, 39) and logmel_frames(torch.zeros(0)).shape == (0, 80)
    assert torch.equal(mfcc_frames(torch.zeros(SR)), torch.zeros(num_frames(SR), 39))  # constant dims -> 0


def test_mfcc_is_torchaudio_mfcc_with_deltas_on_the_encoder_grid() -> None:
    wave = _speechy(2 * SR + 123, seed=2)
    ref = torchaudio.transforms.MFCC(SR, 13, log_mels=True, melkwargs=dict(
        n_fft=400, win_length=400, hop_length=320, n_mels=40, center=False, mel_scale="htk"))(wave)  # (13, T)
    d1 = torchaudio.functional.compute_deltas(ref)
    d2 = torchaudio.functional.compute_deltas(d1)
    expected = standardise(torch.cat([ref, d1, d2]).T)
    got = mfcc_frames(wave)
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(got[:, :13], mfcc_frames(wave, deltas=False), atol=1e-5)


def test_frame_i_sees_samples_i_hop_to_i_hop_plus_window() -> None:
    """A click at sample p lights up exactly the frames whose window [i*320, i*320+400) holds p."""
    for p in (5000, 4850, 320 * 20 + 10):
        wave = torch.zeros(SR)
        wave[p] = 1.0
        energy = logmel_frames(wave).mean(1)
        hit = {i for i in range(num_frames(SR)) if i * 320 <= p < i * 320 + 400}
        assert {int(i) for i in torch.nonzero(energy > energy.min() + 1.0)} == hit, p


def test_batch_equals_one_call_per_utterance() -> None:
    lengths = [3 * SR, 399, 777, SR + 5]
    waves = [_speechy(n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
        batch[i, len(w):] = 5.0  # loud padding must not reach any row's features
    for kind, single in (("mfcc", mfcc_frames), ("logmel", logmel_frames)):
        feats, frames = FrameFeatureExtractor(kind=kind)(batch, torch.tensor(lengths))
        assert frames.tolist() == [num_frames(n) for n in lengths]
        for i, w in enumerate(waves):
            n = int(frames[i])
            assert torch.allclose(feats[i, :n], single(w), atol=1e-5), (kind, i)
            assert not feats[i, n:].any()


def test_config_errors_and_description() -> None:
    with pytest.raises(ConfigError, match="kind must be one of"):
        FrameFeatureConfig(kind="plp")
    with pytest.raises(ConfigError, match="hop <= window"):
        FrameFeatureConfig(window=320, hop=400)
    cfg = FrameFeatureConfig(kind="mfcc")
    assert cfg.dim == 39 and cfg.to_dict()["window"] == 400 and cfg.to_dict()["hop"] == 320
    assert "n_mels" not in cfg.to_dict() and FrameFeatureConfig(kind="logmel").dim == 80
    assert FrameFeatureConfig(kind="logmel").to_dict()["standardise"] == "utterance"
