"""Vocoder networks: generators (exact output length, paper parameter counts), discriminators, losses."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from torch import nn

from speechunits.errors import ConfigError
from speechunits.vocoder.discriminators import (
    MultiPeriodDiscriminator, MultiResolutionSTFTDiscriminator, MultiScaleDiscriminator, build_discriminators)
from speechunits.vocoder.generators import GENERATORS, build_generator, count_parameters
from speechunits.vocoder.hifigan import factor_hop
from speechunits.vocoder.istft_generator import ISTFT
from speechunits.vocoder.losses import (
    HIFIGAN_LOSS_WEIGHTS, feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss, mel_l1_loss,
    multi_resolution_stft_loss)

TINY = {
    "hifigan_v1": {"upsample_initial_channel": 32},
    "hifigan_v2": {"upsample_initial_channel": 16},
    "hifigan_v3": {"upsample_initial_channel": 32},
    "istft": {"dim": 32, "intermediate_dim": 64, "num_layers": 2},
}
TINY_DISCS = {
    "mpd": {"channels": [4, 8, 8, 8, 8]},
    "msd": {"channels": [16, 16, 16, 16, 16, 16, 16]},
    "mrd": {"channels": 4, "resolution_scale": 0.25},
}


class TinyLogMel(nn.Module):
    """log(clamp(|mel|, 1e-5)) with torchaudio, standing in for speechunits.features.mel.LogMel."""

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop: int = 64, n_mels: int = 32) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                                        power=1.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.mel(wave), min=1e-5))


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("hop", [256, 160, 320, 200, 240, 300, 441, 12])
def test_output_length_is_frames_times_hop(name: str, hop: int) -> None:
    torch.manual_seed(0)
    gen = build_generator(name, 16, hop, TINY[name])
    for frames in (1, 4):
        y = gen(torch.randn(2, 16, frames))
        assert y.shape == (2, 1, frames * hop)
        assert torch.isfinite(y).all()


def test_factor_hop() -> None:
    assert factor_hop(256) == [8, 8, 2, 2]  # the paper's V1
    assert factor_hop(256, 3) == [8, 8, 4]  # the paper's V3
    for hop in (160, 200, 240, 300, 320, 441, 480, 512, 600):
        rates = factor_hop(hop)
        assert math.prod(rates) == hop and 3 <= len(rates) <= 4
        assert rates == sorted(rates, reverse=True) and max(rates) <= 10


@pytest.mark.parametrize("hop", [251, 257, 22, 13 * 16])
def test_unfactorable_hop_is_a_config_error(hop: int) -> None:
    with pytest.raises(ConfigError, match="prime factor"):
        build_generator("hifigan_v1", 80, hop)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown generator"):
        build_generator("wavenet", 80, 256)
    with pytest.raises(ConfigError, match="unknown hifigan_v1 generator options"):
        build_generator("hifigan_v1", 80, 256, {"channels": 3})
    with pytest.raises(ConfigError, match="multiply to"):
        build_generator("hifigan_v1", 80, 256, {"upsample_rates": [8, 8, 2]})
    with pytest.raises(ConfigError, match="unknown or unused"):
        build_discriminators(["mpd", "cqt"])


def test_explicit_upsample_rates() -> None:
    gen = build_generator("hifigan_v1", 16, 320, {"upsample_initial_channel": 32, "upsample_rates": [10, 4, 4, 2]})
    assert gen(torch.randn(1, 16, 3)).shape == (1, 1, 960)


@pytest.mark.parametrize("name,paper,tol", [("hifigan_v1", 13.92e6, 0.02), ("hifigan_v2", 0.92e6, 0.02),
                                            ("hifigan_v3", 1.46e6, 0.02)])
def test_parameter_counts_match_the_paper(name: str, paper: float, tol: float) -> None:
    gen = build_generator(name, 80, 256)
    assert abs(count_parameters(gen) - paper) / paper < tol


def test_remove_weight_norm_keeps_the_function() -> None:
    torch.manual_seed(0)
    gen = build_generator("hifigan_v3", 16, 160, TINY["hifigan_v3"]).eval()
    x = torch.randn(1, 16, 5)
    with torch.no_grad():
        before = gen(x)
        gen.remove_weight_norm()
        after = gen(x)
    assert not any("parametrizations" in k for k in gen.state_dict())
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)


def test_istft_inverts_a_same_padded_stft() -> None:
    hop, n_fft = 160, 640
    x = torch.randn(2, 40 * hop)
    pad = (n_fft - hop) // 2
    padded = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(padded, n_fft, hop, n_fft, torch.hann_window(n_fft), center=False, return_complex=True)
    assert spec.shape[-1] == 40
    torch.testing.assert_close(ISTFT(n_fft, hop)(spec), x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls,kwargs,count", [
    (MultiPeriodDiscriminator, TINY_DISCS["mpd"], 5),
    (MultiScaleDiscriminator, TINY_DISCS["msd"], 3),
    (MultiResolutionSTFTDiscriminator, TINY_DISCS["mrd"], 3),
])
def test_discriminator_structure_and_gradients(cls: type, kwargs: dict, count: int) -> None:
    torch.manual_seed(0)
    disc = cls(**kwargs)
    wave = (0.1 * torch.randn(2, 1, 2003)).requires_grad_()
    scores, feats = disc(wave)
    assert len(scores) == len(feats) == count
    for s, fs in zip(scores, feats):
        assert s.dim() == 2 and s.shape[0] == 2
        assert len(fs) >= 2 and all(f.shape[0] == 2 for f in fs)
        assert fs[-1].flatten(1).shape == s.shape  # the last feature map is the score map
    loss, _ = lsgan_generator_loss(scores)
    loss = loss + feature_matching_loss([[f.detach() + 1 for f in fs] for fs in feats], feats)
    loss.backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)


def test_build_discriminators() -> None:
    discs = build_discriminators(["mpd", "msd", "mrd"], TINY_DISCS)
    assert list(discs) == ["mpd", "msd", "mrd"]
    assert isinstance(discs["mrd"], MultiResolutionSTFTDiscriminator)
    assert discs["mrd"].resolutions == [(256, 64, 256), (512, 128, 512), (128, 32, 128)]
    default = build_discriminators(["mrd"])["mrd"]
    assert default.resolutions == [(1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)]


def test_lsgan_losses_on_known_inputs() -> None:
    real = [torch.ones(2, 3), torch.full((1, 4), 0.5)]
    fake = [torch.zeros(2, 3), torch.full((1, 4), 0.5)]
    total, per = lsgan_discriminator_loss(real, fake)
    assert [float(p) for p in per] == pytest.approx([0.0, 0.5])  # (1-.5)^2 + .5^2
    assert float(total) == pytest.approx(0.5)
    total, per = lsgan_generator_loss(fake)
    assert [float(p) for p in per] == pytest.approx([1.0, 0.25])
    assert float(total) == pytest.approx(1.25)
    assert HIFIGAN_LOSS_WEIGHTS == {"adversarial": 1.0, "feature_matching": 2.0, "mel": 45.0}


def test_feature_matching() -> None:
    feats = [[torch.randn(2, 3, 5), torch.randn(2, 4)], [torch.randn(2, 7)]]
    assert float(feature_matching_loss(feats, [[f.clone() for f in fs] for fs in feats])) == 0.0
    shifted = [[f + 0.5 for f in fs] for fs in feats]
    assert float(feature_matching_loss(feats, shifted)) == pytest.approx(1.5)  # 3 layers x 0.5, summed


def test_mel_and_stft_losses() -> None:
    log_mel = TinyLogMel()
    t = torch.arange(4000) / 8000
    wave = (0.5 * torch.sin(2 * math.pi * 220 * t)).view(1, 1, -1)
    assert float(mel_l1_loss(wave, wave, log_mel)) == 0.0
    assert float(mel_l1_loss(wave * 0.5, wave, log_mel)) == pytest.approx(math.log(2), rel=1e-3)
    res = [(256, 64, 256), (128, 32, 128)]
    assert float(multi_resolution_stft_loss(wave, wave, res)) == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0))
    sc, mag = multi_resolution_stft_loss(0.5 * noise, noise, res, return_terms=True)
    assert float(sc) == pytest.approx(0.5, rel=1e-3)
    assert float(mag) == pytest.approx(math.log(2), rel=1e-2)


def test_tiny_istft_generator_overfits_a_sine() -> None:
    """A small iSTFT generator learns one 0.25 s sine from fixed conditioning with mel L1 + STFT loss.

    The sine carries a -60 dB noise floor: both losses compare log magnitudes, and a pure sine's
    empty bins (clamped at the log floor) would dominate them."""
    torch.manual_seed(0)
    hop, frames = 64, 31
    t = torch.arange(frames * hop) / 8000
    target = (0.5 * torch.sin(2 * math.pi * 440 * t)).view(1, 1, -1) + 1e-3 * torch.randn(1, 1, frames * hop)
    cond = torch.randn(1, 8, frames)
    gen = build_generator("istft", 8, hop, {"dim": 32, "intermediate_dim": 64, "num_layers": 2})
    log_mel = TinyLogMel()
    res = [(256, 64, 256), (128, 32, 128)]
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-2)

    def loss_fn() -> torch.Tensor:
        y = gen(cond)
        return mel_l1_loss(y, target, log_mel) + multi_resolution_stft_loss(y, target, res)

    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(80):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(loss_fn())
    assert last < 0.3 * first, (first, last)


def test_istft_instantaneous_phase_is_a_coherent_phase_vocoder_at_init() -> None:
    """With the output layer zeroed, each bin advances by its centre frequency every frame."""
    gen = build_generator("istft", 8, 40, {"dim": 16, "intermediate_dim": 32, "num_layers": 1,
                                          "phase": "instantaneous"})
    nn.init.zeros_(gen.out.weight)
    nn.init.zeros_(gen.out.bias)
    cond = torch.randn(2, 8, 12)
    spec = gen.spectrum(cond)
    assert gen(cond).shape == (2, 1, 12 * 40)
    step = torch.angle(spec[..., 1:] / spec[..., :-1])  # phase advance per frame, in (-pi, pi]
    expected = torch.remainder(2 * math.pi * torch.arange(81) * 40 / 160 + math.pi, 2 * math.pi) - math.pi
    assert torch.allclose(torch.remainder(step - expected[None, :, None] + math.pi, 2 * math.pi) - math.pi,
                          torch.zeros_like(step), atol=1e-4)
    with pytest.raises(ConfigError, match="phase"):
        build_generator("istft", 8, 40, {"phase": "group_delay"})


def test_magnitude_prior_is_the_pseudo_inverse_of_the_mels() -> None:
    from speechunits.features.mel import LogMel, MelConfig, mel_pseudo_inverse
    from speechunits.vocoder.config import VocoderConfig
    from speechunits.vocoder.inputs import VocoderInputs
    from speechunits.vocoder.model import Vocoder

    mel_cfg = {"sample_rate": 16000, "n_fft": 512, "win_length": 512, "hop_length": 128, "n_mels": 40}
    cfg = VocoderConfig.from_dict({"generator": "istft", "input": "mel", "mel": mel_cfg, "cond_dim": 8,
                                   "generator_overrides": {"dim": 16, "intermediate_dim": 32, "num_layers": 1},
                                   "magnitude_prior": True})
    model = Vocoder(cfg)
    nn.init.zeros_(model.generator.out.weight)
    nn.init.zeros_(model.generator.out.bias)
    t = torch.arange(16000) / 16000
    mel = LogMel(MelConfig.from_dict(mel_cfg))(torch.sin(2 * math.pi * 440 * t)[None])
    x = VocoderInputs(lengths=torch.tensor([mel.shape[-1]]), mel=mel)
    prior = model.magnitude_prior(x)
    spec = model.generator.spectrum(model.frontend(x), prior)
    pinv = mel_pseudo_inverse(MelConfig.from_dict(mel_cfg), model.generator.n_fft)
    assert torch.allclose(spec.abs(), (pinv @ mel.exp()[0]).abs().clamp(1e-5, 100.0)[None], rtol=1e-4, atol=1e-6)
    assert int(spec.abs()[0, :, 20].argmax()) == round(440 / (16000 / model.generator.n_fft))  # the tone's bin
    with pytest.raises(ConfigError, match="magnitude_prior"):
        VocoderConfig.from_dict({"generator": "hifigan_v3", "input": "mel", "magnitude_prior": True})
