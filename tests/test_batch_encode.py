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
