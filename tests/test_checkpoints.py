"""Checkpoint loading in every layout: outputs equal the source model's; errors name the problem.

The inverse key maps below (torchaudio names -> fairseq / HF names) are written independently
of speechunits.encoders.checkpoints, so a wrong rename table fails these tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from speechunits.errors import CheckpointError
from speechunits.encoders.checkpoints import load_encoder, save_encoder
from speechunits.encoders.model import EncoderConfig, SpeechEncoder

POS = "encoder.transformer.pos_conv_embed.conv."


def to_fairseq(key: str) -> str:
    rules = [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)", r"feature_extractor.conv_layers.\1.0.\2"),
        (r"feature_extractor\.conv_layers\.0\.layer_norm\.(\w+)", r"feature_extractor.conv_layers.0.2.\1"),
        (r"encoder\.feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1"),
        (r"encoder\.feature_projection\.projection\.(\w+)", r"post_extract_proj.\1"),
        (re.escape(POS) + r"bias", "encoder.pos_conv.0.bias"),
        (re.escape(POS) + r"parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
        (re.escape(POS) + r"parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
        (r"encoder\.transformer\.layer_norm\.(\w+)", r"encoder.layer_norm.\1"),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.(\w+)\.(\w+)", r"encoder.layers.\1.self_attn.\2.\3"),
        (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(\w+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)", r"encoder.layers.\1.fc1.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)", r"encoder.layers.\1.fc2.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(\w+)", r"encoder.layers.\1.final_layer_norm.\2"),
    ]
    for pat, rep in rules:
        if re.fullmatch(pat, key):
            return re.sub(pat, rep, key)
    raise AssertionError(key)


def to_hf(key: str, old_weight_norm: bool = True) -> str:
    if key.startswith(POS + "parametrizations"):
        if old_weight_norm:
            return "encoder.pos_conv_embed.conv." + ("weight_g" if key.endswith("original0") else "weight_v")
        return "encoder.pos_conv_embed.conv." + key[len(POS):]
    if key.startswith(POS):
        return "encoder.pos_conv_embed.conv." + key[len(POS):]
    key = key.replace("encoder.feature_projection.", "feature_projection.")
    return key.replace("encoder.transformer.", "encoder.")


def _model(seed: int = 0, **overrides) -> SpeechEncoder:
    torch.manual_seed(seed)
    return SpeechEncoder(EncoderConfig.tiny(**overrides)).eval()


def _same_outputs(a: SpeechEncoder, b: SpeechEncoder) -> None:
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)


def _fairseq_cfg(c: EncoderConfig) -> dict:
    return {
        "model": {
            "_name": "hubert", "encoder_layers": c.num_layers, "encoder_embed_dim": c.encoder_embed_dim,
            "encoder_ffn_embed_dim": c.ffn_dim, "encoder_attention_heads": c.num_heads,
            "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2", "extractor_mode": "default",
            "layer_norm_first": False, "conv_bias": False, "conv_pos": c.pos_conv_kernel,
            "conv_pos_groups": c.pos_conv_groups,
        },
        "task": {"normalize": False},
    }


def _fairseq_sd(m: SpeechEncoder) -> dict:
    sd = {to_fairseq(k): v.clone() for k, v in m.state_dict().items()}
    sd["mask_emb"] = torch.zeros(m.config.encoder_embed_dim)
    sd["label_embs_concat"] = torch.zeros(10, 8)
    sd["final_proj.weight"] = torch.zeros(8, m.config.encoder_embed_dim)
    sd["final_proj.bias"] = torch.zeros(8)
    return sd


def _hf_config(c: EncoderConfig) -> dict:
    return {
        "architectures": ["HubertModel"], "model_type": "hubert",
        "conv_dim": [l[0] for l in c.extractor_conv_layer_config],
        "conv_kernel": [l[1] for l in c.extractor_conv_layer_config],
        "conv_stride": [l[2] for l in c.extractor_conv_layer_config],
        "conv_bias": False, "feat_extract_norm": "group", "do_stable_layer_norm": False,
        "hidden_size": c.encoder_embed_dim, "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
        "intermediate_size": c.ffn_dim, "num_conv_pos_embeddings": c.pos_conv_kernel,
        "num_conv_pos_embedding_groups": c.pos_conv_groups, "feat_proj_layer_norm": True,
    }


def test_fairseq_pt_with_cfg(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = _model()
    path = tmp_path / "hubert.pt"
    torch.save({"cfg": _fairseq_cfg(m.config), "model": _fairseq_sd(m)}, path)
    with caplog.at_level(logging.INFO, logger="speechunits.encoders.checkpoints"):
        loaded = load_encoder(path)
    assert loaded.config.num_layers == 2 and loaded.config.num_heads == 4
    assert loaded.checkpoint_info.format == "fairseq"
    assert loaded.checkpoint_info.dropped == {"pretraining head": 4}
    assert "pretraining head" in caplog.text
    _same_outputs(m, loaded)


def test_fairseq_pt_with_legacy_args_and_truncation(tmp_path: Path) -> None:
    m3 = _model(num_layers=3)
    args = argparse.Namespace(**_fairseq_cfg(m3.config)["model"], normalize=False)
    path = tmp_path / "hubert_args.pt"
    torch.save({"args": args, "model": _fairseq_sd(m3)}, path)
    full = load_encoder(path)
    assert full.config.num_layers == 3
    _same_outputs(m3, full)
    cut = load_encoder(path, num_layers=2)
    assert cut.config.num_layers == 2 and cut.checkpoint_info.dropped["truncated layers"] == 16
    x = torch.randn(1, 3000)
    with torch.inference_mode():  # post-LN: layer 2 of the 3-layer model is the 2-layer output
        torch.testing.assert_close(cut(x)[0], m3.extract_features(x)[0][1], atol=1e-6, rtol=1e-6)


class FakeOmegaConf:
    """Stands for a config class the loader must not import (omegaconf, Lightning)."""

    def __init__(self) -> None:
        self.anything = 1


def test_unknown_pickled_classes_are_stubbed(tmp_path: Path) -> None:
    m = _model()
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {"net.speech_model." + to_hf(k): v for k, v in m.state_dict().items()},
                "hyper_parameters": FakeOmegaConf()}, path)
    loaded = load_encoder(path, config=m.config)
    _same_outputs(m, loaded)


@pytest.mark.parametrize("old_weight_norm", [True, False])
def test_hf_directory(tmp_path: Path, old_weight_norm: bool) -> None:
    m = _model()
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_hf_config(m.config)))
    sd = {to_hf(k, old_weight_norm): v.clone() for k, v in m.state_dict().items()}
    sd["masked_spec_embed"] = torch.zeros(m.config.encoder_embed_dim)
    torch.save(sd, d / "pytorch_model.bin")
    loaded = load_encoder(d)
    assert loaded.checkpoint_info.format == "hf" and not loaded.config.normalize_waveform
    _same_outputs(m, loaded)


def test_hf_directory_errors(tmp_path: Path) -> None:
    d = tmp_path / "hf"
    d.mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_encoder(d)
    (d / "config.json").write_text(json.dumps(_hf_config(EncoderConfig.tiny())))
    with pytest.raises(CheckpointError, match="neither pytorch_model.bin nor model.safetensors"):
        load_encoder(d)
    (d / "config.json").write_text(json.dumps({**_hf_config(EncoderConfig.tiny()), "feat_proj_layer_norm": False}))
    torch.save({to_hf(k): v for k, v in _model().state_dict().items() if "feature_projection.layer_norm" not in k},
               d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="feat_proj_layer_norm"):
        load_encoder(d)
    (d / "pytorch_model.bin").unlink()
    (d / "config.json").write_text(json.dumps(_hf_config(EncoderConfig.tiny())))
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(CheckpointError, match="safetensors package is not installed"):
            load_encoder(d)
    else:
        with pytest.raises(CheckpointError):
            load_encoder(d)


def test_torchaudio_state_dict_and_own_format(tmp_path: Path) -> None:
    m = _model(normalize_waveform=True)
    plain = tmp_path / "plain.pt"
    torch.save(m.state_dict(), plain)
    loaded = load_encoder(plain, config=m.config)
    assert loaded.checkpoint_info.format == "torchaudio"
    _same_outputs(m, loaded)
    own = tmp_path / "sub" / "own.pt"
    save_encoder(own, m)
    assert not [p for p in own.parent.iterdir() if p.name != "own.pt"]  # no temporaries left
    again = load_encoder(own)
    assert again.config == m.config
    _same_outputs(m, again)


def test_lightning_ckpt_reference_layout(tmp_path: Path) -> None:
    """``net.speech_model.`` + HF keys, config inferred from shapes, inputs normalised."""
    m = _model(num_heads=1)  # heads are not in the weights: inference uses width // 64 = 1
    sd = {"net.speech_model." + to_hf(k): v.clone() for k, v in m.state_dict().items()}
    sd["net.thresholder.mu"] = torch.zeros(2)
    path = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 10, "hyper_parameters": {"lr": 1e-4}}, path)
    loaded = load_encoder(path)
    info = loaded.checkpoint_info
    assert (info.format, info.scheme, info.prefix) == ("lightning", "hf", "net.speech_model.")
    assert info.dropped == {"outside prefix": 1}
    assert loaded.config.normalize_waveform
    expect = SpeechEncoder(EncoderConfig.tiny(num_heads=1, normalize_waveform=True)).eval()
    expect.load_state_dict(m.state_dict())
    _same_outputs(expect, loaded)
    # the released sylber.ckpt: a bare HubertModel state dict, and the EMA dict
    bare = tmp_path / "sylber.ckpt"
    torch.save({to_hf(k): v for k, v in m.state_dict().items()}, bare)
    _same_outputs(expect, load_encoder(bare))
    ema = tmp_path / "ema_dict.ckpt"
    torch.save({"ema": {to_hf(k): v for k, v in m.state_dict().items()}}, ema)
    _same_outputs(expect, load_encoder(ema))


def test_prefix_selection(tmp_path: Path) -> None:
    a, b = _model(seed=1), _model(seed=2)
    sd = {"student.model." + to_hf(k): v for k, v in a.state_dict().items()}
    sd.update({"teacher.model." + to_hf(k): v for k, v in b.state_dict().items()})
    path = tmp_path / "two.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="pass prefix="):
        load_encoder(path, config=a.config)
    _same_outputs(b, load_encoder(path, config=a.config, prefix="teacher.model."))
    with pytest.raises(CheckpointError, match="no encoder weights under prefix"):
        load_encoder(path, config=a.config, prefix="nope.")


def test_unexpected_and_missing_keys(tmp_path: Path) -> None:
    m = _model()
    sd = _fairseq_sd(m)
    sd["encoder.layers.0.self_attn.rel_pos_bias.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save({"cfg": _fairseq_cfg(m.config), "model": sd}, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*rel_pos_bias") as err:
        load_encoder(path)
    assert str(path) in str(err.value)
    sd = _fairseq_sd(m)
    del sd["encoder.layers.1.fc2.bias"]
    torch.save({"cfg": _fairseq_cfg(m.config), "model": sd}, path)
    with pytest.raises(CheckpointError, match=r"missing keys.*layers\.1\.feed_forward\.output_dense\.bias"):
        load_encoder(path)


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    m = _model()
    path = tmp_path / "m.pt"
    torch.save(m.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'encoder\.transformer\.layers\.0\.feed_forward"
                                              r"\.intermediate_dense\.weight': checkpoint \(128, 64\), model \(96, 64\)"):
        load_encoder(path, config=EncoderConfig.tiny(ffn_dim=96))


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    m = _model()
    good = tmp_path / "good.pt"
    save_encoder(good, m)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint") as err:
        load_encoder(cut)
    assert str(cut) in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        load_encoder(junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="0 bytes"):
        load_encoder(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        load_encoder(other)
