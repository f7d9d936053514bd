"""Capacitron's pieces: attention, reference encoder masking, posteriors and KL, losses, the model."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from speechunits.errors import ConfigError
from speechunits.tts.attention import DynamicConvolutionAttention, beta_binomial_prior
from speechunits.tts.config import TacotronConfig, TTSConfig
from speechunits.tts.losses import guided_attention_loss, laplace_nll, stop_loss, stop_targets
from speechunits.tts.prosody import LagrangeMultipliers, ReferenceEncoder, VariationalProsody, kl_to_standard_normal
from speechunits.tts.tacotron import Capacitron

TINY = dict(num_symbols=12, embed_dim=16, encoder_dim=16, encoder_convs=1, attention_dim=8, attention_rnn_dim=24,
            prenet_dim=16, decoder_dim=24, reduction=2, postnet_dim=16, postnet_convs=2, location_filters=4,
            location_kernel=7, dca_filters=4, dca_kernel=7, speaker_dim=4)
PROSODY = dict(latent_dim=4, ref_rnn_dim=8, text_summary_dim=8, posterior_hidden=8, ref_channels=[4, 4, 4, 4, 4, 4])
MEL = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=24, f_max=8000.0)


def model(kind: str = "VT", attention: str = "location", speakers: int = 0) -> Capacitron:
    torch.manual_seed(0)
    return Capacitron(TTSConfig(mel=MEL, tacotron={**TINY, "attention": attention, "num_speakers": speakers},
                                prosody={**PROSODY, "kind": kind}))


def test_beta_binomial_prior_is_a_pmf_leaning_forward_by_little():
    p = beta_binomial_prior(11, 0.1, 0.9)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-5)
    assert int(p.argmax()) == 0 and float(p[:3].sum()) > 0.7  # mostly stay or move a step


def test_dynamic_convolution_attention_never_moves_backwards():
    cfg = TacotronConfig(**{**TINY, "attention": "dynamic_conv"})
    att = DynamicConvolutionAttention(24, 10, cfg)
    memory = torch.randn(3, 30, 10)
    mask = torch.ones(3, 30, dtype=torch.bool)
    state = att.init_state(memory, mask)
    position = torch.zeros(3)
    for _ in range(40):
        _, w, state = att(torch.randn(3, 24) * 3, memory, att.preprocess(memory), mask, state)
        centre = (w * torch.arange(30)).sum(-1)
        assert bool((centre >= position - 0.5).all())  # the prior only lets mass move forward
        position = centre
    assert float(position.min().detach()) > 1.0  # and it does move


def test_reference_encoder_ignores_padding_in_eval_mode():
    torch.manual_seed(0)
    enc = ReferenceEncoder(24, [4, 4, 8, 8, 8, 8], 8).eval()
    short = torch.randn(1, 37, 24)
    silence = -3.0
    padded = torch.cat([torch.cat([short, torch.full((1, 63, 24), silence)], 1), torch.randn(1, 100, 24)])
    alone = enc(short, torch.tensor([37]))
    batched = enc(padded, torch.tensor([37, 100]))
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_masked_batch_norm_statistics_skip_padding():
    """Huge values past the valid length change neither the batch statistics nor the output."""
    x = torch.randn(2, 64, 24)
    junk = torch.cat([x, torch.full((2, 64, 24), 50.0)], dim=1)
    outs, stats = [], []
    for mel in (x, junk):
        torch.manual_seed(0)
        enc = ReferenceEncoder(24, [4, 4, 4, 4, 4, 4], 8).train()
        outs.append(enc(mel, torch.tensor([64, 64])))
        stats.append(torch.cat([n.running_mean for n in enc.norms] + [n.running_var for n in enc.norms]))
    assert torch.allclose(stats[0], stats[1], atol=1e-5)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q = Normal(torch.randn(2, 6), torch.rand(2, 6) + 0.3)
    z = q.rsample((20000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(kl_to_standard_normal(q), mc, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kind", ["V", "VT", "VTS", "hierarchical"])
def test_posteriors_have_the_right_levels_and_need_what_they_condition_on(kind):
    cfg = TTSConfig(mel=MEL, tacotron={**TINY, "num_speakers": 2}, prosody={**PROSODY, "kind": kind}).prosody
    torch.manual_seed(0)
    vp = VariationalProsody(cfg, 24, 16, 4)
    mel, lengths = torch.randn(2, 40, 24), torch.tensor([40, 30])
    text, tl = torch.randn(2, 7, 16), torch.tensor([7, 5])
    out = vp(mel, lengths, text, tl, torch.randn(2, 4))
    levels = 2 if kind == "hierarchical" else 1
    assert out.kl.shape == (2, levels) and bool((out.kl >= 0).all())
    assert out.embedding.shape == (2, cfg.embedding_dim) and out.embedding.device == mel.device
    if cfg.uses_text:
        with pytest.raises(ConfigError, match="transcript"):
            vp(mel, lengths, None, None)
    prior = vp.sample_prior(3, 0.0, torch.device("cpu"))
    if kind == "hierarchical":  # temperature 0: z_s = 0 and z_p the conditional prior's mean
        assert torch.allclose(prior[:, :4], torch.zeros(3, 4))
        assert torch.allclose(prior[:, 4:], vp.prior_p(torch.zeros(3, 4)).loc)
    else:
        assert torch.equal(prior, torch.zeros(3, 4))


def test_hierarchical_z_s_transfer_samples_z_p_from_the_conditional_prior():
    cfg = TTSConfig(mel=MEL, tacotron=TINY, prosody={**PROSODY, "kind": "hierarchical"}).prosody
    torch.manual_seed(0)
    vp = VariationalProsody(cfg, 24, 16, 0).eval()
    args = (torch.randn(1, 40, 24), torch.tensor([40]), torch.randn(1, 7, 16), torch.tensor([7]))
    a = vp(*args, sample=False, level="z_p").embedding
    b = vp(*args, sample=False, level="z_p").embedding
    c = vp(*args, sample=False, level="z_s", temperature=0.0).embedding
    assert torch.equal(a, b)  # the posterior mean is deterministic
    assert torch.equal(c[:, :4], a[:, :4])  # same z_s
    assert torch.allclose(c[:, 4:], vp.prior_p(a[:, :4]).loc)  # z_p from p(z_p | z_s) at temperature 0


def test_lagrange_multiplier_gradient_ascends_the_constraint():
    lm = LagrangeMultipliers(2)
    opt = torch.optim.SGD(lm.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        lm(torch.tensor([10.0, 1.0]), torch.tensor([5.0, 3.0])).backward()
        opt.step()
    beta = lm.beta().detach()
    assert float(beta[0]) > 1.0 > float(beta[1])  # KL > C raises beta, KL < C lowers it


def test_laplace_nll_is_nats_over_valid_values():
    pred, target = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
    nll = laplace_nll(pred, target, torch.tensor([4, 2]), scale=0.5)
    per_value = 1 / 0.5 + math.log(2 * 0.5)
    assert torch.allclose(nll, torch.tensor([12 * per_value, 6 * per_value]))


def test_stop_targets_and_guided_attention():
    assert stop_targets(torch.tensor([5, 4]), 3, 2).tolist() == [[0, 0, 1], [0, 1, 1]]
    logits = torch.tensor([[-9.0, -9.0, 9.0], [-9.0, 9.0, 0.0]])
    assert float(stop_loss(logits, torch.tensor([5, 4]), 2, 5.0)) < 1e-3  # the padded step is ignored
    diag = torch.eye(6).unsqueeze(0)
    anti = torch.eye(6).flip(1).unsqueeze(0)
    lengths = torch.tensor([6])
    assert float(guided_attention_loss(diag, lengths, lengths)) < 0.02
    assert float(guided_attention_loss(anti, lengths, lengths)) > 0.3


@pytest.mark.parametrize("kind,attention", [("none", "location"), ("VT", "dynamic_conv"), ("hierarchical", "location")])
def test_model_teacher_forced_and_free_running(kind, attention):
    m = model(kind, attention)
    text, tl = torch.randint(2, 12, (2, 7)), torch.tensor([7, 5])
    mel, ml = torch.randn(2, 20, 24), torch.tensor([20, 15])
    out = m(text, tl, mel, ml)
    assert out.mel_after.shape == (2, 20, 24) and out.attention.shape == (2, 10, 7) and out.stop_logits.shape == (2, 10)
    assert (out.kl is None) == (kind == "none")
    m.eval()
    prosody = None if m.prosody is None else m.prosody.sample_prior(2, 1.0, torch.device("cpu"))
    free = m.infer(text, tl, prosody, max_frames_per_symbol=4.0)
    assert free.steps.tolist() and all(1 <= s <= 14 for s in free.steps.tolist())
    assert torch.allclose(free.attention.sum(-1), torch.ones_like(free.attention.sum(-1)), atol=1e-4)
    if kind != "none":
        with pytest.raises(ConfigError, match="prosody embedding"):
            m.infer(text, tl, None)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="attention"):
        TTSConfig(tacotron={**TINY, "attention": "gmm"})
    with pytest.raises(ConfigError, match="kind"):
        TTSConfig(tacotron=TINY, prosody={"kind": "VAE"})
    with pytest.raises(ConfigError, match="speaker"):
        TTSConfig(tacotron=TINY, prosody={"kind": "VTS"})
    with pytest.raises(ConfigError, match="unknown key"):
        TTSConfig.from_dict({"tacotron": {**TINY, "layers": 3}})
