"""SLU model, encoders and batching: shapes, padding, decoding, overfitting, checkpoints."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechunits.data.utterance import Utterance
from speechunits.errors import CheckpointError, ManifestError, UnitFormatError
from speechunits.slu.data import collate, decoder_io, fsc_examples, pad_audio, slurp_examples
from speechunits.slu.encoders import MelConformerEncoder, UnitEncoder, Wav2Vec2Encoder, unit_batch
from speechunits.slu.model import SLUModel
from speechunits.slu.tokenizer import train_tokenizer

torch.set_num_threads(1)


def tiny_model(vocab: int = 30, seed: int = 0) -> SLUModel:
    torch.manual_seed(seed)
    enc = MelConformerEncoder(n_mels=40, d_model=32, num_layers=1, num_heads=4, ffn_dim=64, kernel_size=7, dropout=0.0)
    return SLUModel(enc, vocab_size=vocab, d_model=32, num_layers=2, num_heads=4, ffn_dim=64, dropout=0.0, max_decode_len=12)


def tones(spec: list[tuple[float, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_audio([0.3 * torch.sin(2 * math.pi * f * torch.arange(n) / 16000) for f, n in spec])


TARGETS = [[4, 5, 10, 11, 12], [6, 5, 13, 14], [7, 5, 10, 15, 16, 17], [8, 5, 18]]
SPEC = [(300, 4800), (900, 4000), (2000, 4400), (4500, 3200)]


def test_forward_shapes_and_pooling() -> None:
    model = tiny_model()
    audio, lens = tones(SPEC)
    tin, tout = decoder_io(TARGETS)
    out = model.forward_all(audio, lens, tin)
    assert out.logits.shape == (4, tin.size(1), 30)
    assert out.memory.shape[0] == 4 and out.memory.shape[2] == 32 and int(out.memory_lens.max()) == out.memory.size(1)
    assert model.pooled_audio(audio, lens).shape == (4, 32)
    pooled = model.pooled_text(tin)
    assert pooled.shape == (4, 32)
    # pad positions do not enter the text pooling
    longer = torch.cat([tin, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(model.pooled_text(longer), pooled)
    assert torch.allclose(pooled[3], model.embed.weight[[2, 8, 5, 18]].mean(0))


def test_cross_entropy_ignores_padding() -> None:
    model = tiny_model().eval()
    audio, lens = tones(SPEC)
    tin, tout = decoder_io(TARGETS)
    loss = model.loss(model(audio, lens, tin), tout)
    # more padding columns: same loss
    pad = torch.zeros(4, 5, dtype=torch.long)
    loss_padded = model.loss(model(audio, lens, torch.cat([tin, pad], 1)), torch.cat([tout, pad], 1))
    assert loss_padded.item() == pytest.approx(loss.item(), rel=1e-5)
    # arbitrary logits at pad target positions: same loss
    logits = model(audio, lens, tin).detach()
    noisy = logits.clone()
    noisy[tout == model.pad_id] = torch.randn_like(noisy[tout == model.pad_id]) * 50
    assert model.loss(noisy, tout).item() == pytest.approx(model.loss(logits, tout).item(), rel=1e-6)
    # the mean is over real tokens only
    n_real = int((tout != 0).sum())
    manual = F.cross_entropy(logits.reshape(-1, 30), tout.reshape(-1), reduction="none").reshape(tout.shape)
    assert model.loss(logits, tout).item() == pytest.approx(float((manual * (tout != 0)).sum() / n_real), rel=1e-5)


def test_encoder_output_independent_of_batch_padding() -> None:
    model = tiny_model().eval()
    audio, lens = tones(SPEC[1:2])
    alone, alone_lens = model.encode(audio, lens)
    batch, batch_lens = model.encode(*tones(SPEC))
    assert int(batch_lens[1]) == int(alone_lens[0])
    assert torch.allclose(batch[1, : alone.size(1)], alone[0], atol=1e-4)


def test_greedy_equals_beam_size_one() -> None:
    for seed in range(3):
        model = tiny_model(vocab=12, seed=seed)
        audio, lens = tones(SPEC)
        assert model.greedy_decode(audio, lens, max_len=8) == model.beam_search(audio, lens, beam_size=1, max_len=8)


def test_wide_beam_is_exhaustive_search() -> None:
    """With a beam wider than the search space and no length penalty, the result is the argmax
    over all sequences of <= max_len tokens (finished with eos, or cut at max_len)."""
    model = tiny_model(vocab=6, seed=1).eval()
    audio, lens = tones(SPEC[:2])
    max_len = 3
    best = model.beam_search(audio, lens, beam_size=300, max_len=max_len, length_penalty=0.0)
    allowed = [1, 4, 5]  # not pad 0, bos 2, eos 3
    for b in range(2):
        memory, mlen = model.encode(audio[b : b + 1], lens[b : b + 1])

        def score(seq: list[int], finished: bool) -> float:
            prefix = torch.tensor([[2] + seq])
            logits = model.decode_logits(memory, mlen, prefix)[0].float()
            logits[:, [0, 2]] = float("-inf")
            logp = F.log_softmax(logits, dim=-1)
            targets = seq + [3] if finished else seq
            return float(sum(logp[i, t] for i, t in enumerate(targets)))

        with torch.no_grad():
            cands = [(score(list(s), True), list(s)) for k in range(max_len) for s in itertools.product(allowed, repeat=k)]
            cands += [(score(list(s), False), list(s)) for s in itertools.product(allowed, repeat=max_len)]
        assert best[b] == max(cands)[1]


def test_overfits_four_examples() -> None:
    model = tiny_model()
    audio, lens = tones(SPEC)
    tin, tout = decoder_io(TARGETS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for step in range(80):
        loss = model.loss(model(audio, lens, tin), tout)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 20 and step % 10 == 0 and model.greedy_decode(audio, lens) == TARGETS:
            if model.beam_search(audio, lens, beam_size=3) == TARGETS:
                break
    assert loss.item() < 0.2 * first
    assert model.greedy_decode(audio, lens) == TARGETS
    assert model.beam_search(audio, lens, beam_size=3) == TARGETS
    assert model.training  # decoding restores the training mode


TINY_W2V = dict(
    extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    encoder_embed_dim=32,
    pos_conv_kernel=8,
    pos_conv_groups=4,
    num_layers=2,
    num_heads=4,
    ffn_dim=64,
    layer_drop=0.0,
)  # EncoderConfig fields


def test_wav2vec2_encoder_checkpoint_and_frozen_front_end(tmp_path) -> None:
    torch.manual_seed(0)
    src = Wav2Vec2Encoder(TINY_W2V, freeze_feature_extractor=False)
    ckpt = tmp_path / "w2v.pt"
    torch.save(src.model.state_dict(), ckpt)  # a bare torchaudio-layout state dict
    enc = Wav2Vec2Encoder(TINY_W2V, checkpoint=ckpt, freeze_feature_extractor=True)
    for k, v in src.model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[k], v), k
    model = SLUModel(enc, vocab_size=20, d_model=48, num_layers=1, num_heads=4, ffn_dim=64)
    audio, lens = tones(SPEC[:2])
    tin, tout = decoder_io(TARGETS[:2])
    model.train()
    assert enc.model.training and not enc.model.feature_extractor.training
    model.loss(model(audio, lens, tin), tout).backward()
    assert all(p.grad is None for p in enc.model.feature_extractor.parameters())
    assert any(p.grad is not None for p in enc.model.encoder.parameters())
    # a checkpoint of another shape is an error naming the file
    other = dict(TINY_W2V, num_layers=3)
    with pytest.raises(CheckpointError, match="w2v.pt"):
        Wav2Vec2Encoder(other, checkpoint=ckpt)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        Wav2Vec2Encoder(TINY_W2V, checkpoint=tmp_path / "junk.pt")


def test_wav2vec2_encoder_padding_invariant() -> None:
    torch.manual_seed(2)
    enc = Wav2Vec2Encoder(TINY_W2V).eval()
    audio, lens = tones(SPEC)
    batch, batch_lens = enc(audio, lens)
    alone, alone_lens = enc(*tones(SPEC[1:2]))
    assert int(batch_lens[1]) == int(alone_lens[0])
    assert torch.allclose(batch[1, : int(alone_lens[0])], alone[0], atol=1e-4)


def _to_fairseq(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchaudio keys -> fairseq HuBERT keys, plus the pretraining heads the loader drops."""
    rules = [
        (r"feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
        (r"encoder\.feature_projection\.projection\.", "post_extract_proj."),
        (r"encoder\.feature_projection\.layer_norm\.", "layer_norm."),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
        (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
        (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
        (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    ]
    import re

    out = {}
    for key, value in state.items():
        for pat, rep in rules:
            if re.match(pat, key):
                out[re.sub(pat, rep, key)] = value
                break
        else:
            raise AssertionError(f"no rule for {key}")
    out["label_embs_concat"] = torch.zeros(3, 4)
    out["final_proj.weight"] = torch.zeros(4, 32)
    out["mask_emb"] = torch.zeros(32)
    return out


def test_wav2vec2_encoder_loads_fairseq_layout(tmp_path) -> None:
    torch.manual_seed(1)
    src = Wav2Vec2Encoder(TINY_W2V)
    ckpt = tmp_path / "hubert_fairseq.pt"
    cfg = {"model": {"encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
                     "conv_feature_layers": "[(16, 10, 5), (16, 3, 2), (16, 2, 2)]", "conv_pos": 8, "conv_pos_groups": 4}}
    torch.save({"cfg": cfg, "model": _to_fairseq(src.model.state_dict())}, ckpt)
    # the last layer truncated away
    enc = Wav2Vec2Encoder(TINY_W2V, checkpoint=ckpt, num_layers=1)
    assert len(enc.model.encoder.transformer.layers) == 1 and enc.output_dim == 32
    assert torch.equal(enc.model.encoder.transformer.layers[0].attention.k_proj.weight, src.model.encoder.transformer.layers[0].attention.k_proj.weight)
    # an unknown key is refused, not silently ignored
    bad = _to_fairseq(src.model.state_dict())
    bad["encoder.layers.0.extra.weight"] = torch.zeros(2)
    torch.save({"cfg": cfg, "model": bad}, ckpt)
    with pytest.raises(CheckpointError, match="hubert_fairseq.pt"):
        Wav2Vec2Encoder(TINY_W2V, checkpoint=ckpt)


class Rec:
    def __init__(self, units: list[int] | None, starts: list[int], ends: list[int]) -> None:
        self.id, self.units, self.starts, self.ends = "u", units, starts, ends


def test_unit_encoder_and_batch() -> None:
    torch.manual_seed(0)
    enc = UnitEncoder(50, d_model=32, num_layers=1, num_heads=4, ffn_dim=64, dropout=0.0, use_durations=True).eval()
    batch = unit_batch([Rec([1, 2, 3], [0, 2, 5], [2, 5, 9]), Rec([4], [0], [3])], pad_id=enc.pad_id)
    assert batch["units"].tolist() == [[1, 2, 3], [4, 50, 50]] and batch["durations"].tolist() == [[2, 3, 4], [3, 0, 0]]
    out, lens = enc(batch["units"], batch["lengths"], durations=batch["durations"])
    assert out.shape == (2, 3, 32) and lens.tolist() == [3, 1]
    alone = unit_batch([Rec([4], [0], [3])], pad_id=enc.pad_id)
    out1, _ = enc(alone["units"], alone["lengths"], durations=alone["durations"])
    assert torch.allclose(out1[0, 0], out[1, 0], atol=1e-5)
    model = SLUModel(enc, vocab_size=20, d_model=32, num_layers=1, num_heads=4, ffn_dim=64)
    tin, _ = decoder_io([[4, 5], [6]])
    assert model(batch["units"], batch["lengths"], tin, durations=batch["durations"]).shape == (2, 3, 20)
    with pytest.raises(UnitFormatError, match="no quantized"):
        unit_batch([Rec(None, [0], [1])], pad_id=50)
    with pytest.raises(UnitFormatError, match="2 units but 1 starts"):
        unit_batch([Rec([1, 2], [0], [1])], pad_id=50)


def test_examples_and_collate(tmp_path) -> None:
    fsc = [
        Utterance("s1-a", "/x/a.wav", "Turn on the lights", "s1", extra={"action": "activate", "object": "lights", "location": "none"}),
        Utterance("s1-b", "/x/b.wav", "Volume up, please", "s1", extra={"action": "increase", "object": "volume", "location": "none", "intent": "increase_volume_none"}),
    ]
    ex = fsc_examples(fsc)
    assert [e.label for e in ex] == ["activate_lights_none", "increase_volume_none"]
    slurp = [Utterance("r1", "/x/r1.flac", "wake me at six", extra={"scenario": "alarm", "intent": "alarm_set"})]
    assert slurp_examples(slurp)[0].label == "alarm" and slurp_examples(slurp, "intent")[0].label == "alarm_set"
    with pytest.raises(ManifestError, match="lacks the label"):
        fsc_examples([Utterance("s2-c", "/x/c.wav", "hi", extra={"action": "x"})])
    with pytest.raises(ManifestError, match="no transcript"):
        slurp_examples([Utterance("r2", "/x/r2.flac", None, extra={"scenario": "alarm"})])
    tok = train_tokenizer([e.transcript for e in ex] * 3, [e.label for e in ex], tmp_path / "t.model", vocab_size=40)
    batch = collate(ex, tok, {"activate_lights_none": 0, "increase_volume_none": 1}, waves=[torch.ones(5).numpy(), torch.ones(3).numpy()])
    assert batch.audio.shape == (2, 5) and batch.audio_lens.tolist() == [5, 3] and batch.audio[1, 3:].abs().sum() == 0
    assert batch.labels.tolist() == [0, 1] and batch.tokens_in[:, 0].tolist() == [2, 2]
    assert batch.tokens_out[0, 0].item() == tok.intent_ids["activate_lights_none"] and batch.tokens_out[0, 1].item() == tok.sep_id
    n0 = len(tok.encode_target("activate_lights_none", "Turn on the lights"))
    assert batch.tokens_out[0, n0].item() == 3 and (batch.tokens_in != 0).sum(1).tolist()[0] == n0 + 1


def test_beam_search_on_a_scripted_model(monkeypatch) -> None:
    """A hand-made next-token table. Step 2 ranks: [4]+eos -0.15, [4,5] -0.16, [5]+eos -0.5,
    [5,4] -0.6. An eos ranked below the top ``beam`` (=2) must not finish a hypothesis (else
    the search ends at step 2 with [4]); [4,5]+eos = -0.161 wins with length normalisation
    (-0.161/3 > -0.15/2), while greedy stops at [4]."""
    model = tiny_model(vocab=6)
    table = {
        (): {4: -0.1, 5: -0.2},
        (4,): {3: -0.05, 5: -0.06},
        (5,): {3: -0.3, 4: -0.4},
        (4, 5): {3: -0.001},
        (5, 4): {3: -0.001},
    }

    def scripted(memory: torch.Tensor, lens: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        out = torch.full((prefix.size(0), 6), -20.0)
        for r, row in enumerate(prefix[:, 1:].tolist()):
            for tok, lp in table.get(tuple(row), {}).items():
                out[r, tok] = lp
        return out

    monkeypatch.setattr(model, "_step_logprobs", scripted)
    audio, lens = tones(SPEC[:1])
    assert model.beam_search(audio, lens, beam_size=2, max_len=5, length_penalty=1.0) == [[4, 5]]
    assert model.beam_search(audio, lens, beam_size=2, max_len=5, length_penalty=0.0) == [[4]]
    assert model.greedy_decode(audio, lens, max_len=5) == [[4]]


def test_coconut_objective_parts_and_teacher_is_frozen() -> None:
    from speechunits.slu.data import SLUBatch
    from speechunits.slu.losses import seq_kd_targets
    from speechunits.slu.objective import CoconutObjective, CoconutWeights

    model = tiny_model()
    audio, lens = tones(SPEC)
    tin, tout = decoder_io(TARGETS)
    batch = SLUBatch(["a", "b", "c", "d"], audio, lens, tin, tout, torch.tensor([0, 1, 0, 2]), ["x", "y", "x", "z"])
    is_memory = torch.tensor([True, True, False, False])
    plain = CoconutObjective(model, proj_dim=8, hidden_dim=16, weights=CoconutWeights(nspt=0.0, mm=0.0))
    loss, parts = plain(batch, is_memory)
    assert set(parts) == {"ce", "loss"} and loss.item() == pytest.approx(model.loss(model(audio, lens, tin), tout).item(), rel=1e-5)

    obj = CoconutObjective(model, proj_dim=8, hidden_dim=16, weights=CoconutWeights(nspt=0.5, mm=0.3, kd=1.0))
    _, parts = obj(batch, is_memory)
    assert set(parts) == {"ce", "mm", "loss"}  # no teacher yet: no NSPT / KD
    obj.start_task()
    t_model, t_head = obj.teacher
    hyps = t_model.beam_search(audio[is_memory], lens[is_memory], beam_size=2, max_len=6)
    loss, parts = obj(batch, is_memory, kd_targets=seq_kd_targets(hyps))
    assert set(parts) == {"ce", "mm", "nspt", "kd", "loss"}
    assert parts["loss"] == pytest.approx(parts["ce"] + 0.3 * parts["mm"] + 0.5 * parts["nspt"] + parts["kd"], rel=1e-5)
    before = [p.clone() for p in t_model.parameters()]
    opt = torch.optim.SGD(obj.parameters(), lr=0.1)
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in t_model.parameters()) and all(p.grad is None for p in t_head.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, t_model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
