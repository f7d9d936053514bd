"""The two data-pipeline backends give the same batches, skips, errors and resume positions; the backend
choice (auto, env, explicit); worker cleanup; ``max_padding`` and ``pin_memory``."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechunits.data import pipeline as pipeline_module
from speechunits.data.batching import pack_by_frames
from speechunits.data.pipeline import (
    BACKEND_ENV,
    AudioBatch,
    build_audio_pipeline,
    pack_buckets,
    pin_memory_wanted,
    resolve_backend,
)
from speechunits.data.utterance import Utterance
from speechunits.errors import AudioError, ConfigError

SR = 16000

needs_fairseq2 = pytest.mark.fairseq2  # skipped without the fairseq2 extra, failed under CI (tests/conftest.py)


@pytest.fixture()
def corpus(tmp_path: Path) -> list[Utterance]:
    """17 short utterances (two of them at other rates, one stereo) plus a truncated, an empty and a NaN file."""
    rng = np.random.default_rng(0)
    utts = []
    for i in range(14):
        seconds = float(rng.uniform(0.04, 0.5))
        path = tmp_path / f"u{i:02d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
        utts.append(Utterance(id=f"u{i:02d}", audio=str(path)))
    for name, sr, channels in [("low", 8000, 1), ("cd", 22050, 1), ("stereo", SR, 2)]:
        path = tmp_path / f"{name}.wav"
        sf.write(path, (0.1 * rng.standard_normal((int(0.2 * sr), channels))).astype(np.float32).squeeze(), sr)
        utts.append(Utterance(id=name, audio=str(path)))
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, (0.1 * rng.standard_normal(8000)).astype(np.float32), SR)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 700, dtype=np.float32), SR, subtype="FLOAT")
    utts += [Utterance(id="truncated", audio=str(truncated)), Utterance(id="empty", audio=str(empty)),
             Utterance(id="nan", audio=str(nan))]
    return utts


def run(utts: list[Utterance], backend: str, **kw: object) -> tuple[list[AudioBatch], list[tuple[str, str]], int]:
    """Every batch, the skipped (id, reason) and len() of one pass."""
    pipe = build_audio_pipeline(utts, backend=backend, **kw)  # type: ignore[arg-type]
    assert pipe.backend == backend
    batches = list(pipe)
    skipped = [(s.id, s.reason) for s in pipe.skipped]
    n = len(pipe)
    pipe.close()
    return batches, skipped, n


def assert_same(a: list[AudioBatch], b: list[AudioBatch]) -> None:
    assert [x.ids for x in a] == [y.ids for y in b]
    for x, y in zip(a, b):
        assert torch.equal(x.waveforms, y.waveforms) and x.waveforms.dtype == y.waveforms.dtype == torch.float32
        assert torch.equal(x.lengths, y.lengths) and torch.equal(x.offsets, y.offsets)


OPTIONS = {
    "crop_shuffle": dict(max_batch_seconds=0.9, crop_seconds=0.3, crop_align=160, shuffle=True, seed=7),
    "drop_remainder": dict(max_batch_seconds=0.7, shuffle=True, seed=2, drop_remainder=True),
    "plain": dict(max_batch_seconds=1.0),
}


@needs_fairseq2
@pytest.mark.parametrize("options", OPTIONS.values(), ids=list(OPTIONS))
def test_backends_give_identical_batches_on_two_ranks(corpus: list[Utterance], options: dict) -> None:
    covered: list[str] = []
    skipped_ids: list[str] = []
    for rank in range(2):
        common = dict(options, rank=rank, world_size=2, num_parallel_calls=2, prefetch=2)
        f_batches, f_skipped, f_len = run(corpus, "fairseq2", **common)
        t_batches, t_skipped, t_len = run(corpus, "torch", **common)
        assert_same(f_batches, t_batches)
        assert f_skipped == t_skipped
        assert f_len == t_len and len(t_batches) <= t_len
        covered += [i for b in t_batches for i in b.ids]
        skipped_ids += [i for i, _ in t_skipped]
    assert len(covered) == len(set(covered))
    assert {"empty", "nan", "truncated"} <= set(skipped_ids)  # found bad while decoding, in a worker
    if not options.get("drop_remainder"):
        assert sorted(covered + skipped_ids) == sorted(u.id for u in corpus)


@needs_fairseq2
def test_drop_remainder_truncates_like_fairseq2_shard(corpus: list[Utterance]) -> None:
    """3 ranks over a bucket count that is not a multiple of 3: the same number of batches each, and the same ones."""
    good = corpus[:17]
    common = dict(max_batch_seconds=0.5, world_size=3, drop_remainder=True, num_parallel_calls=1)
    pipe = build_audio_pipeline(good, backend="torch", **common)
    assert len(pipe.buckets) % 3 != 0
    for rank in range(3):
        f_batches, _, f_len = run(good, "fairseq2", rank=rank, **common)
        t_batches, _, t_len = run(good, "torch", rank=rank, **common)
        assert_same(f_batches, t_batches)
        assert len(t_batches) == t_len == f_len == len(pipe.buckets) // 3


@needs_fairseq2
def test_on_error_raise_is_the_same_error(corpus: list[Utterance]) -> None:
    messages = []
    for backend in ("fairseq2", "torch"):
        with pytest.raises(AudioError) as err:
            list(build_audio_pipeline(corpus, backend=backend, max_batch_seconds=1.0, on_error="raise",
                                      num_parallel_calls=2))
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_backend_resumes_mid_epoch(corpus: list[Utterance], workers: int) -> None:
    opts = dict(max_batch_seconds=0.6, shuffle=True, seed=4, backend="torch", num_parallel_calls=workers, prefetch=3)
    full, full_skipped, _ = run(corpus, **opts)  # type: ignore[arg-type]
    for k in (0, 2, len(full)):
        pipe = build_audio_pipeline(corpus, **opts)  # type: ignore[arg-type]
        it = iter(pipe)
        head = [next(it) for _ in range(k)]
        state = pipe.state_dict()
        pipe.close()
        resumed = build_audio_pipeline(corpus, **opts)  # type: ignore[arg-type]
        resumed.load_state_dict(state)
        assert_same(head + list(resumed), full)
        assert_same(list(resumed), full)  # the pass after a resumed one starts from the beginning
        assert [(s.id, s.reason) for s in resumed.skipped] == full_skipped


@needs_fairseq2
def test_both_backends_resume_to_the_same_remaining_batches(corpus: list[Utterance]) -> None:
    opts = dict(max_batch_seconds=0.6, crop_seconds=0.25, shuffle=True, seed=9, rank=1, world_size=2,
                num_parallel_calls=2, prefetch=2)
    rest = {}
    for backend in ("fairseq2", "torch"):
        pipe = build_audio_pipeline(corpus, backend=backend, **opts)  # type: ignore[arg-type]
        it = iter(pipe)
        next(it), next(it)
        state = pipe.state_dict()
        pipe.close()
        resumed = build_audio_pipeline(corpus, backend=backend, **opts)  # type: ignore[arg-type]
        resumed.load_state_dict(state)
        rest[backend] = list(resumed)
        other = "torch" if backend == "fairseq2" else "fairseq2"
        with pytest.raises(ConfigError, match=f"saved by the {backend} backend and cannot resume the {other}"):
            build_audio_pipeline(corpus, backend=other, **opts).load_state_dict(state)  # type: ignore[arg-type]
    assert rest["torch"] and len(rest["torch"]) == len(run(corpus, "torch", **opts)[0]) - 2
    assert_same(rest["fairseq2"], rest["torch"])


def test_state_of_another_plan_or_not_a_state_is_refused(corpus: list[Utterance]) -> None:
    pipe = build_audio_pipeline(corpus, backend="torch", max_batch_seconds=0.6, num_parallel_calls=0)
    state = pipe.state_dict()
    with pytest.raises(ConfigError, match="another bucket plan"):
        build_audio_pipeline(corpus, backend="torch", max_batch_seconds=0.6, seed=1, shuffle=True,
                             num_parallel_calls=0).load_state_dict(state)
    with pytest.raises(ConfigError, match="not a data pipeline state"):
        pipe.load_state_dict({"position": 1})
    with pytest.raises(ConfigError, match="position 99 is not in"):
        pipe.load_state_dict({**state, "reader": {"position": 99}})


def test_abandoned_or_closed_passes_leave_no_worker_processes(corpus: list[Utterance]) -> None:
    pipe = build_audio_pipeline(corpus, backend="torch", max_batch_seconds=0.4, num_parallel_calls=2)
    it = iter(pipe)
    next(it)
    assert len(multiprocessing.active_children()) == 2
    del it  # abandoned mid-pass
    assert multiprocessing.active_children() == []
    it = iter(pipe)
    next(it)
    pipe.close()  # closed mid-pass
    assert multiprocessing.active_children() == []
    with pytest.raises(RuntimeError, match="closed during a pass"):
        next(it)
    with pytest.raises(RuntimeError, match="closed"):
        list(pipe)
    for _ in build_audio_pipeline(corpus, backend="torch", max_batch_seconds=0.4, num_parallel_calls=2):
        break  # a for loop left early (the generator is dropped)
    assert multiprocessing.active_children() == []


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("torch") == "torch"
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")
    with pytest.raises(ConfigError, match=f"{BACKEND_ENV}: data backend must be one of auto, fairseq2, torch"):
        resolve_backend("auto")
    with pytest.raises(ConfigError, match="backend argument: data backend must be one of"):
        resolve_backend("jax")


@needs_fairseq2
def test_auto_falls_back_to_torch_under_another_torch(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A torch other than the one fairseq2n was built for (the GPU machine's 2.11): auto takes torch, once logged."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu128")
    monkeypatch.setattr(pipeline_module, "_announced", set())
    pipeline_module.fairseq2_unusable.cache_clear()
    try:
        built, _ = pipeline_module._fairseq2n_torch_build()
        assert built is not None
        with caplog.at_level(logging.INFO, logger=pipeline_module.__name__):
            assert resolve_backend("auto") == "torch"
            assert resolve_backend("auto") == "torch"
        notes = [r.getMessage() for r in caplog.records if "data pipeline backend" in r.getMessage()]
        assert notes == [f"data pipeline backend: torch (fairseq2n was built for torch {built} "
                         f"({pipeline_module._fairseq2n_torch_build()[1]}) but torch 2.11.0+cu128 is installed)"]
        with pytest.raises(ConfigError, match=r"asks for the fairseq2 data backend, but it cannot be used: "
                                              r"fairseq2n was built for torch 2\.9\.1"):
            build_audio_pipeline([], max_batch_seconds=1.0, backend="fairseq2")
    finally:
        pipeline_module.fairseq2_unusable.cache_clear()


@needs_fairseq2
def test_auto_takes_fairseq2_where_it_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert resolve_backend("auto") == "fairseq2"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend("auto") == "torch" and resolve_backend("fairseq2") == "fairseq2"  # explicit wins


def old_pack(order: list[int], lengths: list[int], max_frames: int) -> list[list[int]]:
    """The packing loop before max_padding existed (the oracle that None must reproduce)."""
    batches, cur, longest = [], [], 0
    for i in order:
        grown = max(longest, lengths[i])
        if cur and grown * (len(cur) + 1) > max_frames:
            batches.append(cur)
            cur, grown = [], lengths[i]
        cur.append(i)
        longest = grown
    return batches + ([cur] if cur else [])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=0, max_size=60), st.integers(400, 3000),
       st.one_of(st.none(), st.floats(0.0, 0.99)), st.booleans(), st.integers(0, 3))
def test_max_padding_bounds_every_bucket(lengths: list[int], budget: int, max_padding: float | None,
                                         shuffle: bool, seed: int) -> None:
    buckets = pack_buckets(lengths, budget, shuffle=shuffle, seed=seed, max_padding=max_padding)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for b in buckets:
        sizes = [lengths[i] for i in b]
        assert len(b) * max(sizes) <= budget
        if max_padding is not None:
            assert 1 - sum(sizes) / (len(b) * max(sizes)) <= max_padding + 1e-12
    if max_padding is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        expected = old_pack(order, lengths, budget)
        if not shuffle:
            assert buckets == expected
        else:
            assert sorted(map(len, buckets)) == sorted(map(len, expected))
    unbounded = pack_buckets(lengths, budget, shuffle=False, seed=0)
    assert len(pack_buckets(lengths, budget, shuffle=False, seed=0, max_padding=max_padding)) >= len(unbounded)


def test_max_padding_examples_and_in_the_pipeline(corpus: list[Utterance]) -> None:
    assert pack_buckets([10, 10, 10, 20], 100, shuffle=False, seed=0) == [[0, 1, 2, 3]]  # padding 0.375
    assert pack_buckets([10, 10, 10, 20], 100, shuffle=False, seed=0, max_padding=0.3) == [[0, 1, 2], [3]]
    assert pack_buckets([10, 10, 10, 20], 100, shuffle=False, seed=0, max_padding=0.375) == [[0, 1, 2, 3]]
    assert pack_by_frames([0, 1, 2], [5, 5, 6], 100, max_padding=0.0) == [[0, 1], [2]]
    good = corpus[:17]
    loose = list(build_audio_pipeline(good, backend="torch", max_batch_seconds=5.0, num_parallel_calls=0))
    tight = list(build_audio_pipeline(good, backend="torch", max_batch_seconds=5.0, num_parallel_calls=0,
                                      max_padding=0.1))
    ratio = [1 - float(b.lengths.sum()) / b.waveforms.numel() for b in tight]
    assert max(ratio) <= 0.1 and len(tight) > len(loose)
    assert max(1 - float(b.lengths.sum()) / b.waveforms.numel() for b in loose) > 0.1
    with pytest.raises(ConfigError, match=r"max_padding must be a fraction in \[0, 1\)"):
        build_audio_pipeline(good, max_batch_seconds=1.0, max_padding=1.0)


@pytest.mark.parametrize("backend", [pytest.param("fairseq2", marks=needs_fairseq2), "torch"])
def test_pin_memory_is_a_no_op_without_cuda(corpus: list[Utterance], backend: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain = run(corpus, backend, max_batch_seconds=0.6, num_parallel_calls=1)[0]
    pinned = run(corpus, backend, max_batch_seconds=0.6, num_parallel_calls=1, pin_memory=True)[0]
    assert_same(plain, pinned)
    assert not any(b.waveforms.is_pinned() for b in pinned)
    assert not pin_memory_wanted(True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pin_memory_wanted(True) and not pin_memory_wanted(False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for pinned memory")
@pytest.mark.parametrize("backend", [pytest.param("fairseq2", marks=needs_fairseq2), "torch"])
def test_pin_memory_pins_with_cuda(corpus: list[Utterance], backend: str) -> None:
    for workers in (0, 2):
        pinned = run(corpus, backend, max_batch_seconds=0.6, num_parallel_calls=workers, pin_memory=True)[0]
        assert pinned and all(b.waveforms.is_pinned() for b in pinned)
