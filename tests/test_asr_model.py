"""The judge's model: it learns tone-coded 'speech' to CER ~0; checkpoints round-trip and a
truncated one is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_tones import SR, TEXTS, tone_wave, train_tone_judge
from speechunits.asr.judge import Judge, load_judge, save_judge
from speechunits.asr.model import spec_augment
from speechunits.errors import CheckpointError
from speechunits.eval.error_rates import error_rates


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models run fastest on one thread (and the test machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_thread: None) -> Judge:
    return train_tone_judge()


def test_blstm_overfits_tone_utterances_to_cer_near_zero(trained: Judge) -> None:
    waves = [tone_wave(t, seed=i) for i, t in enumerate(TEXTS)]  # the training utterances
    hyps = trained.transcribe(waves, SR)
    assert error_rates(TEXTS, hyps)["cer"] <= 5.0, hyps
    assert error_rates(TEXTS, trained.transcribe(waves, SR, beam=4))["cer"] <= 5.0
    from speechunits.audio import resample

    # at another rate: the judge resamples to its 16 kHz
    other = trained.transcribe([resample(w, SR, 22050) for w in waves], 22050)
    assert error_rates(TEXTS, other)["cer"] <= 5.0, other


def test_untrained_model_does_not_pass() -> None:
    """The overfit check can fail: an untrained judge is far from CER 0."""
    judge = train_tone_judge(steps=0)
    hyps = judge.transcribe([tone_wave(t) for t in TEXTS], SR)
    assert error_rates(TEXTS, hyps)["cer"] > 50.0


def test_conformer_overfits_tone_utterances() -> None:
    judge = train_tone_judge("conformer", steps=200)
    hyps = judge.transcribe([tone_wave(t, seed=i) for i, t in enumerate(TEXTS)], SR)
    assert error_rates(TEXTS, hyps)["cer"] <= 10.0, hyps


def test_batching_does_not_change_transcripts(trained: Judge) -> None:
    waves = [tone_wave(t, seed=i) for i, t in enumerate(TEXTS)]
    together = trained.transcribe(waves, SR)
    alone = [trained.transcribe([w], SR)[0] for w in waves]
    assert together == alone
    assert trained.transcribe([], SR) == []


def test_spec_augment_masks_within_length_only() -> None:
    torch.manual_seed(0)
    x = torch.ones(2, 50, 80)
    y = spec_augment(x, torch.tensor([50, 20]), freq_masks=2, freq_width=10, time_masks=2, time_width=10, time_ratio=0.5)
    assert y.shape == x.shape and (y == 0).any() and ((y == 0) | (y == 1)).all()
    zero_rows = (y[1] == 0).all(dim=1).nonzero().flatten()
    assert (zero_rows < 20).all()
    masked_bins = (y == 0).all(dim=1).sum(dim=1)
    assert (masked_bins <= 20).all()


def test_checkpoint_round_trip(trained: Judge, tmp_path: Path) -> None:
    path = save_judge(tmp_path / "judge.pt", trained.model, trained.vocab, trained.fbank, {"step": 7})
    judge = load_judge(path)
    assert judge.vocab == trained.vocab and judge.sample_rate == 16000 and judge.extra["step"] == 7
    waves = [tone_wave(t, seed=3) for t in TEXTS[:4]]
    assert judge.transcribe(waves, SR) == trained.transcribe(waves, SR)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "speechunits.asr-judge/1" and raw["vocab"] == trained.vocab.to_list()
    assert not list(tmp_path.glob(".*tmp*"))


def test_truncated_or_foreign_checkpoint_names_the_file(trained: Judge, tmp_path: Path) -> None:
    path = save_judge(tmp_path / "judge.pt", trained.model, trained.vocab, trained.fbank)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_judge(cut)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_judge(garbage)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_judge(empty)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "speechunits.vocoder/1"}, foreign)
    with pytest.raises(CheckpointError, match="not a judge checkpoint"):
        load_judge(foreign)
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_judge(tmp_path / "missing.pt")
