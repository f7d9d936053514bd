"""SpeechEncoder: exact frame lengths, padding invariance, normalisation, torchaudio equivalence."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from speechunits.encoders.model import EncoderConfig, SpeechEncoder


def _model(**overrides) -> SpeechEncoder:
    torch.manual_seed(0)
    return SpeechEncoder(EncoderConfig.tiny(**overrides)).eval()


def test_hubert_base_geometry() -> None:
    cfg = EncoderConfig()
    assert cfg.num_layers == 9 and cfg.encoder_embed_dim == 768 and cfg.hop_length == 320
    assert cfg.frame_rate == 50.0
    m = SpeechEncoder.__new__(SpeechEncoder)  # frame_lengths only needs the config
    m.__dict__["config"] = cfg
    assert SpeechEncoder.frame_lengths(m, 16000) == 49
    assert SpeechEncoder.frame_lengths(m, 400) == 1
    assert SpeechEncoder.frame_lengths(m, 399) == 0
    assert SpeechEncoder.frame_lengths(m, 16000 * 5) == 249


@pytest.mark.parametrize("num_samples", [400, 401, 719, 720, 1234, 3333, 8000])
def test_frame_lengths_match_output(num_samples: int) -> None:
    m = _model()
    with torch.inference_mode():
        out, lens = m(torch.randn(1, num_samples))
    assert out.shape[1] == m.frame_lengths(num_samples) == int(lens[0])
    assert int(m.frame_lengths(torch.tensor([num_samples]))[0]) == out.shape[1]


def test_padding_invariance() -> None:
    m = _model()
    torch.manual_seed(1)
    a, b = torch.randn(6000), torch.randn(3500)
    batch = torch.zeros(2, 6000)
    batch[0], batch[1, :3500] = a, b
    with torch.inference_mode():
        out, lens = m(batch, torch.tensor([6000, 3500]))
        ya, _ = m(a[None])
        yb, _ = m(b[None])
    assert lens.tolist() == [m.frame_lengths(6000), m.frame_lengths(3500)]
    torch.testing.assert_close(out[0], ya[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, : lens[1]], yb[0], atol=1e-5, rtol=1e-5)
    assert torch.all(out[1, lens[1]:] == 0)


def test_normalize_waveform_is_per_utterance() -> None:
    m = _model(normalize_waveform=True)
    torch.manual_seed(2)
    a, b = torch.randn(5000) * 0.01 + 0.3, torch.randn(3000) * 5.0
    batch = torch.zeros(2, 5000)
    batch[0], batch[1, :3000] = a, b
    with torch.inference_mode():
        out, lens = m(batch, torch.tensor([5000, 3000]))
        ya, _ = m(a[None])
        ya_scaled, _ = m((a * 7.0 - 2.0)[None])
        yb, _ = m(b[None])
    torch.testing.assert_close(out[0], ya[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, : lens[1]], yb[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ya, ya_scaled, atol=1e-4, rtol=1e-4)
    plain = _model(normalize_waveform=False)
    with torch.inference_mode():
        assert not torch.allclose(plain(a[None])[0], plain((a * 7.0)[None])[0], atol=1e-3)


def test_same_as_torchaudio_wav2vec2_model() -> None:
    m = _model()
    c = m.config
    ref = torchaudio.models.wav2vec2_model(
        extractor_mode=c.extractor_mode, extractor_conv_layer_config=c.extractor_conv_layer_config,
        extractor_conv_bias=c.extractor_conv_bias, encoder_embed_dim=c.encoder_embed_dim,
        encoder_projection_dropout=0.0, encoder_pos_conv_kernel=c.pos_conv_kernel,
        encoder_pos_conv_groups=c.pos_conv_groups, encoder_num_layers=c.num_layers, encoder_num_heads=c.num_heads,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=c.ffn_dim, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0, encoder_layer_norm_first=c.layer_norm_first, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()
    ref.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(2, 4000)
    with torch.inference_mode():
        ours, _ = m(x)
        theirs, _ = ref(x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_extract_features_layers(layer_norm_first: bool) -> None:
    m = _model(num_layers=3, layer_norm_first=layer_norm_first)
    x = torch.randn(1, 3000)
    with torch.inference_mode():
        layers, lens = m.extract_features(x)
        last, _ = m(x)
        two, _ = m.extract_features(x, num_layers=2)
    assert len(layers) == 3 and len(two) == 2 and all(h.shape == last.shape for h in layers)
    torch.testing.assert_close(two[1], layers[1])
    if not layer_norm_first:  # post-LN: the last layer's output is the model output
        torch.testing.assert_close(layers[-1], last)


def test_config_round_trip_and_validation() -> None:
    cfg = EncoderConfig.tiny(num_layers=3)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        EncoderConfig.tiny(num_heads=5)
    with pytest.raises(ValueError):
        EncoderConfig(extractor_mode="batch_norm")
    with pytest.raises(ValueError):
        EncoderConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_bad_input_shapes() -> None:
    m = _model()
    with pytest.raises(ValueError):
        m(torch.randn(1, 2, 3000))
    with pytest.raises(ValueError):
        m(torch.randn(2, 3000), torch.tensor([3000, 4000]))
