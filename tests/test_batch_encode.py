"""speechunits.encoders.batch: the one batched inference path. Every utterance comes back once,
encoded (features equal to a one-utterance call, exact frame counts) or failed with its reason;
utterances longer than a batch run alone; a solo run's decode failure is reported, not lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.data.utterance import Utterance
from speechunits.encoders.batch import BAD_AUDIO, NON_FINITE, TOO_SHORT, BatchEncoder, EncodedBatch
from synthetic_inputs import corrupt_flac, randomised_tiny_model, speechlike

SR = 16000


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return randomised_tiny_model()


def _alone(model: torch.nn.Module, wav: np.ndarray, layer: int | None = None) -> np.ndarray:
    x = torch.from_numpy(wav)[None]
    with torch.inference_mode():
        if layer is None:
            feats, n = model(x, torch.tensor([len(wav)]))
        else:
            layers, n = model.extract_features(x, torch.tensor([len(wav)]), num_layers=layer)
            feats = layers[layer - 1]
    return feats[0, : int(n[0])].numpy()


def _collect(batches: list[EncodedBatch]) -> tuple[dict, dict]:
    encoded, failed = {}, {}
    for b in batches:
        for e in b.encoded:
            assert e.id not in encoded and e.id not in failed
            encoded[e.id] = e
        for f in b.failed:
            assert f.id not in encoded and f.id not in failed
            failed[f.id] = f
    return encoded, failed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    """Good utterances (one longer than the 2 s batch), and every kind of utterance that cannot be encoded."""
    root = tmp_path_factory.mktemp("batch")
    utts = []
    for i, seconds in enumerate([0.5, 1.2, 0.8, 3.1, 0.6]):
        path = root / f"g{i}.wav"
        sf.write(path, speechlike(seconds, i), SR, subtype="FLOAT")
        utts.append(Utterance(f"g{i}", str(path)))
    (root / "empty.wav").write_bytes(b"")
    nan = speechlike(0.5, 7)
    nan[10] = np.nan
    sf.write(root / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(root / "short.wav", speechlike(0.01, 8), SR, subtype="FLOAT")  # 160 samples < receptive field
    utts += [Utterance("x-empty", str(root / "empty.wav")), Utterance("x-nan", str(root / "nan.wav")),
             Utterance("x-short", str(root / "short.wav")),
             Utterance("x-flac", str(corrupt_flac(root / "cut.flac"))),
             # the manifest claims an hour: planned as a long utterance, its solo run then fails to decode
             Utterance("x-claims-long", str(root / "g0.wav"), num_samples=3600 * SR, sample_rate=SR)]
    return utts


def test_every_utterance_once_with_reasons(model: torch.nn.Module, corpus: list[Utterance]) -> None:
    encoder = BatchEncoder(model, batch_seconds=2.0)
    encoded, failed = _collect(list(encoder.encode_utterances(corpus, num_workers=2)))
    assert set(encoded) | set(failed) == {u.id for u in corpus}
    assert sorted(encoded) == ["g0", "g1", "g2", "g3", "g4"]  # g3 (3.1 s) is longer than a batch: run alone
    kinds = {uid: f.kind for uid, f in failed.items()}
    assert kinds == {"x-empty": BAD_AUDIO, "x-nan": BAD_AUDIO, "x-short": TOO_SHORT, "x-flac": BAD_AUDIO,
                     "x-claims-long": BAD_AUDIO}
    assert "empty.wav" in failed["x-empty"].reason and "NaN" in failed["x-nan"].reason
    assert "cut.flac" in failed["x-flac"].reason and "receptive field" in failed["x-short"].reason
    assert "g0.wav" in failed["x-claims-long"].reason and "manifest" in failed["x-claims-long"].reason
    assert failed["x-flac"].line.startswith("x-flac\t")


def test_features_equal_one_utterance_calls(model: torch.nn.Module, corpus: list[Utterance]) -> None:
    for layer in (None, 1):
        encoder = BatchEncoder(model, batch_seconds=2.0, layer=layer, autocast=False)
        batches = list(encoder.encode_utterances(corpus[:5], num_workers=1))
        for b in batches:  # padded size within budget, except an utterance alone
            if len(b.encoded) > 1:
                assert len(b.encoded) * max(e.num_samples for e in b.encoded) <= 2.0 * SR
        encoded, failed = _collect(batches)
        assert not failed
        assert [e.id for e in batches[-1].encoded] == ["g3"]  # the long one comes last, alone
        for utt in corpus[:5]:
            wav, _ = sf.read(utt.audio, dtype="float32")
            e = encoded[utt.id]
            assert e.num_samples == len(wav) and e.features.shape[0] == model.frame_lengths(len(wav))
            np.testing.assert_allclose(e.features, _alone(model, wav, layer), atol=1e-4, rtol=1e-4)


def test_waveforms_in_memory(model: torch.nn.Module) -> None:
    waves = [speechlike(d, i) for i, d in enumerate([1.0, 0.005, 2.5, 0.7])] + [np.zeros(0, np.float32)]
    encoder = BatchEncoder(model, batch_seconds=2.0)
    batches = list(encoder.encode_waveforms(waves, names=["a", "b", "c", "d", "e"]))
    encoded, failed = _collect(batches)
    assert sorted(encoded) == ["0", "2", "3"] and failed["1"].kind == TOO_SHORT and failed["4"].kind == BAD_AUDIO
    assert failed["1"].reason.startswith("b: 80 samples") and failed["4"].reason.startswith("e: ")
    assert [len(b) for b in batches if any(e.id == "2" for e in b.encoded)] == [1]  # 2.5 s runs alone
    assert [[e.id for e in b.encoded] + [f.id for f in b.failed] for b in batches][1] == ["3", "1"]  # 0.7 s + 5 ms
    for i in (0, 2, 3):
        np.testing.assert_allclose(encoded[str(i)].features, _alone(model, waves[i]), atol=1e-4, rtol=1e-4)


def test_non_finite_features_are_failures(corpus: list[Utterance]) -> None:
    broken = randomised_tiny_model()
    with torch.no_grad():
        broken.encoder.transformer.layers[0].final_layer_norm.weight.fill_(float("inf"))
    encoded, failed = _collect(list(BatchEncoder(broken, batch_seconds=2.0).encode_utterances(corpus[:2])))
    assert not encoded and {f.kind for f in failed.values()} == {NON_FINITE}
    assert "non-finite features from the model" in failed["g0"].reason


def test_bad_budget() -> None:
    with pytest.raises(ValueError, match="batch_seconds"):
        BatchEncoder(randomised_tiny_model(), batch_seconds=0)


# ------------------------------------------------------------------ budget, compile, device batches
def test_frame_budget_caps_padded_frames(model: torch.nn.Module) -> None:
    """max_batch_frames bounds B x T_frames; the smaller of the two budgets wins."""
    from speechunits.encoders.batch import batch_budget_samples

    assert batch_budget_samples(SR, 320, 60.0, None) == 60 * SR
    assert batch_budget_samples(SR, 320, 60.0, 100) == 100 * 320  # frames win
    assert batch_budget_samples(SR, 320, 1.0, 10**6) == SR  # seconds win
    with pytest.raises(ValueError, match="max_batch_frames"):
        batch_budget_samples(SR, 320, 1.0, 0)
    waves = [speechlike(d, i) for i, d in enumerate([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.55])]
    encoder = BatchEncoder(model, batch_seconds=60.0, max_batch_frames=120, autocast=False)
    batches = [b for b in encoder.encode_waveforms(waves) if b.encoded]
    assert len(batches) >= 3
    for b in batches:
        assert len(b.encoded) * max(e.features.shape[0] for e in b.encoded) <= 120
    encoded, failed = _collect(batches)
    assert not failed and sorted(encoded, key=int) == [str(i) for i in range(len(waves))]
    for i, w in enumerate(waves):
        np.testing.assert_allclose(encoded[str(i)].features, _alone(model, w), atol=1e-4, rtol=1e-4)


def test_lean_group_norm_equals_autograd_formula() -> None:
    """The in-place inference group norm gives the differentiable formula's valid frames (fp32 and bf16)."""
    from speechunits.encoders.model import _masked_group_norm, _masked_group_norm_autograd

    torch.manual_seed(1)
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 8, 50) * 2 + 3.0  # a large mean: the E[x^2] - mean^2 variance must still hold
    lengths = torch.tensor([50, 31, 1])
    valid = torch.arange(50)[None, None, :] < lengths[:, None, None]
    ref = _masked_group_norm_autograd(x, norm, lengths)
    with torch.no_grad():
        lean = _masked_group_norm(x.clone(), norm, lengths)
        half = _masked_group_norm(x.to(torch.bfloat16), norm, lengths)
    assert torch.isfinite(lean).all()
    torch.testing.assert_close(lean[valid.expand_as(lean)], ref[valid.expand_as(ref)], atol=2e-5, rtol=1e-5)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float()[valid.expand_as(half)], ref[valid.expand_as(ref)], atol=0.1, rtol=0.03)
    x.requires_grad_(True)  # with autograd the differentiable formula runs (x is not overwritten)
    _masked_group_norm(x, norm, lengths).sum().backward()
    assert x.grad is not None


def test_length_checks_on_the_host_and_for_direct_callers(model: torch.nn.Module) -> None:
    from speechunits.encoders.batch import check_lengths

    x = torch.zeros(2, 1000)
    with pytest.raises(ValueError, match="1 <= length <= 1000"):
        model(x, torch.tensor([1000, 1001]))  # a direct caller still gets the clear error
    with pytest.raises(ValueError, match="1 <= length <= 1000"):
        check_lengths(x, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="shape"):
        model(x, torch.tensor([10]), check_lengths=False)


def test_forward_compiles_as_one_graph(model: torch.nn.Module) -> None:
    """No host sync in the forward: dynamo captures it whole (fullgraph), with the same features."""
    x = torch.from_numpy(np.stack([speechlike(0.5, 1), speechlike(0.5, 2)]))
    lengths = torch.tensor([8000, 5000])
    compiled = torch.compile(lambda a, b: model(a, b, check_lengths=False), backend="eager", fullgraph=True,
                             dynamic=True)
    with torch.inference_mode():
        got, frames = compiled(x, lengths)
        want, _ = model(x, lengths)
    torch.testing.assert_close(got, want)
    assert frames.tolist() == [model.frame_lengths(8000), model.frame_lengths(5000)]


def test_compile_flag_and_fallback(model: torch.nn.Module) -> None:
    waves = [speechlike(0.7, 3), speechlike(1.1, 4)]
    eager, _ = _collect(list(BatchEncoder(model, batch_seconds=5.0).encode_waveforms(waves)))
    compiled, _ = _collect(list(BatchEncoder(model, batch_seconds=5.0, compile="eager").encode_waveforms(waves)))
    for i in eager:
        np.testing.assert_allclose(compiled[i].features, eager[i].features, atol=1e-5, rtol=1e-5)

    def broken_backend(gm, example_inputs):  # noqa: ANN001, ANN202 - a compiler that always fails
        raise RuntimeError("no compiler here")

    encoder = BatchEncoder(model, batch_seconds=5.0, compile=broken_backend)  # type: ignore[arg-type]
    with pytest.warns(RuntimeWarning, match="torch.compile of the encoder failed.*running eager"):
        fallback, _ = _collect(list(encoder.encode_waveforms(waves)))
    assert encoder.forward.compiled is None
    for i in eager:
        np.testing.assert_allclose(fallback[i].features, eager[i].features, atol=1e-6)


def test_keep_on_device_batches(model: torch.nn.Module) -> None:
    """keep_on_device: padded features, host frame counts, too-short rows reported, non-finite rows flagged."""
    from speechunits.encoders.batch import finite_rows

    waves = [speechlike(0.9, 5), speechlike(0.005, 6), speechlike(0.6, 7)]
    batches = list(BatchEncoder(model, batch_seconds=5.0, keep_on_device=True).encode_waveforms(waves))
    assert len(batches) == 1 and not batches[0].encoded and len(batches[0]) == 3
    b, dev = batches[0], batches[0].device
    assert dev is not None and [f.kind for f in b.failed] == [TOO_SHORT]
    assert len(dev) == 2 and dev.skip == {dev.ids.index(b.failed[0].id)}
    assert dev.num_frames == [model.frame_lengths(n) for n in dev.num_samples] == dev.frame_lengths.tolist()
    assert dev.finite.tolist() == [True, True, True]
    for row, uid in enumerate(dev.ids):
        if row not in dev.skip:
            np.testing.assert_allclose(dev.features[row, : dev.num_frames[row]].numpy(), _alone(model, waves[int(uid)]),
                                       atol=1e-4, rtol=1e-4)
    feats = torch.zeros(3, 4, 2)
    feats[0, 1, 1] = float("nan")
    feats[1, 3, 0] = float("-inf")  # in row 1's padding: not counted
    feats[2, 0, 0] = float("inf")
    assert finite_rows(feats, torch.tensor([4, 2, 4])).tolist() == [False, True, False]
    assert dev.non_finite(0).kind == NON_FINITE and "non-finite features from the model" in dev.non_finite(0).reason
