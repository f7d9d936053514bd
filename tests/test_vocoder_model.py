"""Vocoder config validation, front ends, duration predictor, and the checkpoint file."""

from __future__ import annotations

import pytest
import torch

from speechunits.errors import CheckpointError, ConfigError
from speechunits.features.mel import SILENCE_LOG_MEL
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.duration import DurationPredictor
from speechunits.vocoder.frontends import Frontend
from speechunits.vocoder.inputs import VocoderInputs, collate_inputs
from speechunits.vocoder.model import Vocoder, load_vocoder, save_vocoder

TINY_GEN = {"dim": 16, "intermediate_dim": 32, "num_layers": 1}
MEL = {"sample_rate": 16000, "n_fft": 512, "win_length": 512, "hop_length": 160, "n_mels": 20}


def tiny(**kw) -> VocoderConfig:
    d = {"generator": "istft", "mel": MEL, "cond_dim": 8, "generator_overrides": TINY_GEN,
         "duration_channels": 8, "duration_dropout": 0.0, **kw}
    return VocoderConfig.from_dict(d)


@pytest.mark.parametrize("kw, match", [
    ({"generator": "wavenet"}, "generator"),
    ({"input": "text"}, "input"),
    ({"input": "frame_units", "vocab_size": 10, "silence_id": 9, "unit_hop": 300}, "multiple"),
    ({"input": "frame_units", "silence_id": 3}, "vocab_size"),
    ({"input": "frame_units", "vocab_size": 10}, "silence_id"),
    ({"input": "frame_units", "vocab_size": 10, "silence_id": 10}, "silence_id"),
    ({"input": "syllables", "syllable_source": "embedding"}, "embedding_dim"),
    ({"input": "mel", "duration_predictor": True}, "duration_predictor"),
    ({"input": "syllables", "syllable_source": "embedding", "embedding_dim": 4, "duration_predictor": True},
     "duration_predictor"),
    ({"bogus": 1}, "unknown"),
])
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**kw)


def test_config_round_trip():
    cfg = tiny(input="frame_units", vocab_size=5, silence_id=4, use_f0=True, num_speakers=2, duration_predictor=True)
    assert VocoderConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.upsample == 2


def test_unit_frontend_upsamples_and_gaps_are_silence():
    cfg = tiny(input="frame_units", vocab_size=5, silence_id=4)
    fe = Frontend(cfg)
    ids = torch.tensor([[0, 4, 4, 2]])
    x = VocoderInputs(lengths=torch.tensor([8]), unit_ids=ids)
    assert fe(x).shape == (1, 8, 8)
    v = fe.input.unit_vectors(x)
    assert torch.equal(v[0, 1], fe.input.embed.weight[4]) and torch.equal(v[0, 1], v[0, 2])


def test_embedding_frontend_spreads_vectors_and_silence():
    cfg = tiny(input="syllables", syllable_source="embedding", embedding_dim=3, use_f0=True, num_speakers=3)
    fe = Frontend(cfg)
    vec = torch.tensor([[[1.0, 2, 3], [1.0, 2, 3], [0, 0, 0], [4.0, 5, 6]]])
    sil = torch.tensor([[False, False, True, False]])
    x = VocoderInputs(lengths=torch.tensor([8]), unit_vectors=vec, unit_silence=sil,
                      log_f0=torch.zeros(1, 8), voiced=torch.ones(1, 8), speaker=torch.tensor([2]))
    v = fe.input.unit_vectors(x)
    assert torch.equal(v[0, 0], v[0, 1]) and torch.equal(v[0, 2], fe.input.silence)
    assert fe(x).shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="speaker"):
        fe(VocoderInputs(lengths=x.lengths, unit_vectors=vec, unit_silence=sil, log_f0=x.log_f0, voiced=x.voiced))


def test_mel_model_shape_and_collate_padding():
    cfg = tiny()
    model = Vocoder(cfg)
    a = VocoderInputs(lengths=torch.tensor([5]), mel=torch.zeros(1, 20, 5))
    b = VocoderInputs(lengths=torch.tensor([3]), mel=torch.zeros(1, 20, 3))
    batch = collate_inputs([a, b])
    assert batch.mel.shape == (2, 20, 5) and float(batch.mel[1, 0, 4]) == pytest.approx(SILENCE_LOG_MEL)
    assert model(batch).shape == (2, 1, 5 * 160)


def test_duration_predictor_learns_constant_durations():
    torch.manual_seed(0)
    dp = DurationPredictor(6, channels=16, dropout=0.0)
    opt = torch.optim.Adam(dp.parameters(), lr=1e-2)
    ids = torch.randint(0, 6, (4, 7))
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 5:] = False
    durs = torch.full((4, 7), 3)
    for _ in range(150):
        opt.zero_grad()
        loss = dp.loss(ids, durs, mask)
        loss.backward()
        opt.step()
    pred = dp.predict(ids, mask)
    assert torch.equal(pred[mask], durs[mask]) and int(pred[1, 6]) == 0


def test_save_load_round_trip_and_bad_files(tmp_path):
    cfg = tiny(input="frame_units", vocab_size=5, silence_id=4, duration_predictor=True, num_speakers=2)
    model = Vocoder(cfg)
    path = tmp_path / "vocoder.pt"
    save_vocoder(path, model, extra={"speakers": {"a": 0, "b": 1}})
    loaded = load_vocoder(path)
    assert loaded.cfg == cfg and loaded.extra["speakers"] == {"a": 0, "b": 1}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_vocoder(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_vocoder(tmp_path / "junk.pt")
    torch.save({"format": "other/1"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vocoder file"):
        load_vocoder(tmp_path / "other.pt")
