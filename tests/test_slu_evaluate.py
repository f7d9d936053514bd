"""SLU inference on example lists: results come back in the order of the examples although
they are computed in length-sorted batches, and equal the model's output on each one alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.audio import write_audio
from speechunits.slu.config import DecodeConfig
from speechunits.slu.data import SLUExample
from speechunits.slu.encoders import MelConformerEncoder
from speechunits.slu.evaluate import decode_examples, evaluate, pooled_features
from speechunits.slu.model import SLUModel
from speechunits.slu.tasks import split_classes
from speechunits.slu.inputs import AudioCache

torch.set_num_threads(1)

# (tone Hz, samples): not in length order, two of the same length (ties broken by id)
TONES = [(900, 4000), (300, 4800), (4500, 3200), (2000, 4400), (1200, 4000)]


def _tiny_model() -> SLUModel:
    torch.manual_seed(0)
    enc = MelConformerEncoder(n_mels=40, d_model=32, num_layers=1, num_heads=4, ffn_dim=64, kernel_size=7, dropout=0.0)
    return SLUModel(enc, vocab_size=30, d_model=32, num_layers=2, num_heads=4, ffn_dim=64, dropout=0.0, max_decode_len=12)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[SLUExample]:
    root = tmp_path_factory.mktemp("slu_eval")
    out = []
    for k, (freq, n) in enumerate(TONES):
        path = root / f"u{k}.wav"
        write_audio(path, (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000)).astype(np.float32), 16000)
        out.append(SLUExample(f"u{k}", str(path), "lights on", "activate_lights_none"))
    return out


class _EchoDecoder:
    """Stands for an SLUModel in decoding: each row's hypothesis names its utterance (length
    and second sample), and says which search ran, so a misplaced row shows."""

    def eval(self) -> _EchoDecoder:
        return self

    def _echo(self, wav: torch.Tensor, lens: torch.Tensor, tag: int) -> list[list[int]]:
        return [[int(n), round(1e4 * float(w[1])), tag] for w, n in zip(wav, lens)]

    def greedy_decode(self, wav: torch.Tensor, lens: torch.Tensor, max_len: int) -> list[list[int]]:
        return self._echo(wav, lens, 1)

    def beam_search(self, wav: torch.Tensor, lens: torch.Tensor, beam_size: int, max_len: int, length_penalty: float) -> list[list[int]]:
        return self._echo(wav, lens, beam_size)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decode_examples_in_input_order(examples, beam_size: int) -> None:
    audio = AudioCache()
    decode = DecodeConfig(beam_size=beam_size, max_len=6, batch_size=2)
    hyps = decode_examples(_EchoDecoder(), examples, audio, decode, torch.device("cpu"), desc="test")  # type: ignore[arg-type]
    expected = [[len(audio[ex]), round(1e4 * float(audio[ex][1])), beam_size] for ex in examples]
    assert len({tuple(h) for h in expected}) == len(examples)  # every row tells its utterance
    assert hyps == expected


def test_decode_examples_batched_equals_alone(examples) -> None:
    model, audio = _tiny_model(), AudioCache()
    hyps = decode_examples(model, examples, audio, DecodeConfig(beam_size=1, max_len=6, batch_size=2), torch.device("cpu"))
    for ex, hyp in zip(examples, hyps):
        assert hyp == decode_examples(model, [ex], audio, DecodeConfig(beam_size=1, max_len=6, batch_size=1), torch.device("cpu"))[0]


def test_pooled_features_in_input_order(examples) -> None:
    model, audio = _tiny_model(), AudioCache()
    feats = pooled_features(model, examples, audio, batch_size=2, device=torch.device("cpu"))
    assert feats.shape == (len(examples), model.d_model) and feats.dtype == np.float32
    with torch.no_grad():
        for i, ex in enumerate(examples):
            wav = torch.as_tensor(audio[ex])[None]
            alone = model.pooled_audio(wav, torch.tensor([wav.size(1)])).numpy()[0]
            np.testing.assert_allclose(feats[i], alone, atol=1e-4)


def test_evaluate_without_examples_is_nan() -> None:
    split = split_classes(["a", "b", "c"], 2)
    res = evaluate(_tiny_model(), [], None, split, AudioCache(), DecodeConfig(), torch.device("cpu"))  # type: ignore[arg-type]
    assert res["num"] == 0 and res["sizes"] == [0, 0] and all(math.isnan(v) for v in res["row"])
    assert math.isnan(res["accuracy"]) and math.isnan(res["wer"])
