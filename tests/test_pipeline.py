"""The audio pipeline on each backend (fairseq2, torch): coverage across ranks, batch bounds, lengths, bad
audio, crop, determinism, resume. tests/test_pipeline_backends.py checks that the two give identical batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.audio import load_audio
from speechunits.audio import resampled_length
from speechunits.data.pipeline import BACKEND_ENV, AudioBatch, build_audio_pipeline, pack_buckets
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError, ConfigError

SR = 16000


@pytest.fixture(autouse=True, params=[pytest.param("fairseq2", marks=pytest.mark.fairseq2), "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both backends, chosen the way a user would: SPEECHUNITS_DATA_BACKEND
    (the fairseq2 runs need the ``fairseq2`` extra: see tests/conftest.py)."""
    monkeypatch.setenv(BACKEND_ENV, request.param)
    return request.param


def write(path: Path, seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], sr)
    return path


@pytest.fixture()
def corpus(tmp_path: Path) -> list[Utterance]:
    """13 utterances of 0.05-0.65 s; some with lengths in the manifest, one 8 kHz, one 22.05 kHz, one stereo."""
    utts = []
    for i in range(10):
        seconds = 0.05 + 0.06 * i
        path = write(tmp_path / f"u{i:02d}.wav", seconds, seed=i)
        known = {"num_samples": int(seconds * SR), "sample_rate": SR} if i % 2 else {}
        utts.append(Utterance(id=f"u{i:02d}", audio=str(path), **known))
    utts.append(Utterance(id="low", audio=str(write(tmp_path / "low.flac", 0.3, sr=8000))))
    utts.append(Utterance(id="cd", audio=str(write(tmp_path / "cd.wav", 0.21, sr=22050))))
    utts.append(Utterance(id="stereo", audio=str(write(tmp_path / "stereo.wav", 0.2, channels=2))))
    return utts


def collect(pipe) -> list[AudioBatch]:
    return list(pipe)


def test_two_ranks_cover_every_utterance_once(corpus: list[Utterance], backend: str) -> None:
    seen: list[str] = []
    for rank in range(2):
        pipe = build_audio_pipeline(corpus, max_batch_seconds=1.0, rank=rank, world_size=2, shuffle=True, seed=3)
        assert pipe.backend == backend
        batches = collect(pipe)
        assert len(batches) == len(pipe) > 0
        seen += [i for b in batches for i in b.ids]
        assert pipe.skipped == []
    assert sorted(seen) == sorted(u.id for u in corpus)


def test_batches_bounded_padded_and_lengths_exact(corpus: list[Utterance]) -> None:
    by_id = {u.id: u for u in corpus}
    max_samples = int(0.8 * SR)
    batches = collect(build_audio_pipeline(corpus, max_batch_seconds=0.8, num_parallel_calls=2))
    assert len(batches) > 2
    for b in batches:
        assert b.waveforms.dtype == torch.float32 and b.lengths.dtype == torch.int64
        assert b.waveforms.shape == (len(b.ids), int(b.lengths.max()))
        assert b.waveforms.numel() <= max_samples
        for row, (utt_id, n) in enumerate(zip(b.ids, b.lengths.tolist())):
            expected = load_audio(by_id[utt_id].audio, SR)
            assert n == len(expected)
            np.testing.assert_allclose(b.waveforms[row, :n].numpy(), expected, atol=1e-6)
            assert torch.all(b.waveforms[row, n:] == 0)
    lengths = [int(b.lengths.max()) for b in batches]
    assert lengths == sorted(lengths)  # unshuffled: shortest buckets first


def test_bad_audio_is_reported_and_the_rest_come_out(corpus: list[Utterance], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF this is not audio at all")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 500, dtype=np.float32), SR, subtype="FLOAT")
    bad = [
        Utterance(id="garbage", audio=str(garbage)),
        Utterance(id="nan", audio=str(nan)),  # header fine, decode fails
        Utterance(id="stale", audio=corpus[3].audio, num_samples=99, sample_rate=SR),  # wrong manifest length
        Utterance(id="missing", audio=str(tmp_path / "gone.wav")),
    ]
    out, skipped = [], []
    for rank in range(2):
        pipe = build_audio_pipeline(corpus + bad, max_batch_seconds=1.0, rank=rank, world_size=2)
        out += [i for b in pipe for i in b.ids]
        skipped += pipe.skipped
    assert sorted(out) == sorted(u.id for u in corpus)
    reasons = {s.id: s.reason for s in skipped}
    assert sorted(reasons) == ["garbage", "missing", "nan", "stale"]
    assert reasons["garbage"].startswith(f"{garbage}: not a readable audio file")
    assert "non-finite" in reasons["nan"] and "does not exist" in reasons["missing"]
    assert "manifest is stale" in reasons["stale"]
    with pytest.raises(AudioError, match="non-finite"):
        list(build_audio_pipeline(corpus + bad[1:2], max_batch_seconds=1.0, on_error="raise"))
    with pytest.raises(AudioError, match="not a readable audio file"):
        build_audio_pipeline(bad[:1], max_batch_seconds=1.0, on_error="raise")


def test_crop_is_a_seeded_window_of_the_audio(corpus: list[Utterance]) -> None:
    crop = int(0.25 * SR)
    by_id = {u.id: u for u in corpus}

    def windows(seed: int) -> dict[str, int]:
        starts = {}
        for b in build_audio_pipeline(corpus, max_batch_seconds=1.0, crop_seconds=0.25, seed=seed):
            for row, (utt_id, n) in enumerate(zip(b.ids, b.lengths.tolist())):
                full = load_audio(by_id[utt_id].audio, SR)
                assert n == min(len(full), crop)
                got = b.waveforms[row, :n].numpy()
                hits = [s for s in range(len(full) - n + 1) if np.allclose(full[s : s + n], got, atol=1e-6)]
                assert hits, utt_id
                starts[utt_id] = hits[0]
        return starts

    first = windows(0)
    assert len(first) == len(corpus)
    assert first == windows(0)
    assert first != windows(1)
    assert any(s > 0 for s in first.values())


def test_crop_offsets_are_reported_and_aligned(corpus: list[Utterance]) -> None:
    by_id = {u.id: u for u in corpus}
    seen = 0
    for b in build_audio_pipeline(corpus, max_batch_seconds=1.0, crop_seconds=0.25, crop_align=320, seed=3):
        assert b.offsets is not None and b.offsets.shape == b.lengths.shape
        for row, (utt_id, n, off) in enumerate(zip(b.ids, b.lengths.tolist(), b.offsets.tolist())):
            assert off % 320 == 0
            full = load_audio(by_id[utt_id].audio, SR)
            assert np.allclose(full[off : off + n], b.waveforms[row, :n].numpy(), atol=1e-6)
            seen += off > 0
    assert seen > 0


def test_deterministic_for_a_seed_and_seed_changes_order(corpus: list[Utterance]) -> None:
    def order(seed: int) -> list[list[str]]:
        return [b.ids for b in build_audio_pipeline(corpus, max_batch_seconds=0.6, shuffle=True, seed=seed)]

    assert order(5) == order(5)
    assert order(5) != order(6) or order(5) != order(7)
    pipe = build_audio_pipeline(corpus, max_batch_seconds=0.6)
    assert [b.ids for b in pipe] == [b.ids for b in pipe]  # re-iterable


def test_too_long_and_drop_remainder(corpus: list[Utterance]) -> None:
    pipe = build_audio_pipeline(corpus, max_batch_seconds=0.3, rank=0, world_size=3, drop_remainder=True)
    assert {s.id for s in pipe.skipped} == {"u05", "u06", "u07", "u08", "u09"}
    assert "longer than max_batch_seconds" in pipe.skipped[0].reason
    assert build_audio_pipeline(corpus, max_batch_seconds=0.3, rank=1, world_size=3).skipped == []  # rank 0 reports
    counts = [len(list(build_audio_pipeline(corpus, max_batch_seconds=0.3, rank=r, world_size=3, drop_remainder=True)))
              for r in range(3)]
    assert len(set(counts)) == 1


def test_resume_from_state_dict(corpus: list[Utterance]) -> None:
    full = [b.ids for b in build_audio_pipeline(corpus, max_batch_seconds=0.6, prefetch=2, num_parallel_calls=2)]
    pipe = build_audio_pipeline(corpus, max_batch_seconds=0.6, prefetch=2, num_parallel_calls=2)
    it = iter(pipe)
    head = [next(it).ids, next(it).ids]
    state = pipe.state_dict()
    resumed = build_audio_pipeline(corpus, max_batch_seconds=0.6, prefetch=2, num_parallel_calls=2)
    resumed.load_state_dict(state)
    assert head + [b.ids for b in resumed] == full
    assert [b.ids for b in resumed] == full  # the pass after a resumed one starts from the beginning


def test_helpers_and_bad_options() -> None:
    assert resampled_length(2400, 8000, SR) == len(load_audio_free(2400, 8000))
    assert resampled_length(4630, 22050, SR) == len(load_audio_free(4630, 22050))
    buckets = pack_buckets([5, 1, 4, 2, 3], 6, shuffle=False, seed=0)
    assert buckets == [[1, 3], [4], [2], [0]]
    with pytest.raises(ConfigError, match="expected 0 <= rank < world_size"):
        build_audio_pipeline([], max_batch_seconds=1.0, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="on_error must be"):
        build_audio_pipeline([], max_batch_seconds=1.0, on_error="ignore")  # type: ignore[arg-type]


def load_audio_free(n: int, sr: int) -> np.ndarray:
    """Resample n random samples the way load_audio does."""
    from speechunits.audio import resample

    return resample(np.random.default_rng(0).standard_normal(n).astype(np.float32), sr, SR)
