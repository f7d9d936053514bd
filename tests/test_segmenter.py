"""Segmenter API: inputs (paths, arrays, stereo, other rates), batching == per item, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.audio import write_audio
from speechunits.device import autocast_context, resolve_device
from speechunits.errors import AudioError, ConfigError
from speechunits.sylber import Segmenter as ExportedSegmenter
from speechunits.sylber.segment import greedy_segment
from speechunits.sylber.segmenter import SegmentationResult, Segmenter
from synthetic_inputs import randomised_tiny_model, speechlike

SR = 16000


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    seg = Segmenter(randomised_tiny_model(), device="cpu", norm_threshold=0.0, merge_threshold=0.9)
    # thresholds picked from the model's own norms so that the test data gives several segments
    h = seg(speechlike(2.0, 0)).hidden_states
    seg.norm_threshold = float(np.percentile(np.linalg.norm(h, axis=1), 30))
    return seg


def test_result_fields(segmenter: Segmenter) -> None:
    wav = speechlike(1.5, 1)
    r = segmenter(wav)
    assert isinstance(r, SegmentationResult)
    T = segmenter.model.frame_lengths(len(wav))
    assert r.hidden_states.shape == (T, 64) and r.hidden_states.dtype == np.float32
    assert r.segments_frames.dtype == np.int64 and r.segments_frames.shape[1] == 2
    assert r.num_segments >= 2
    assert r.embeddings.shape == (r.num_segments, 64) and r.embeddings.dtype == np.float32
    np.testing.assert_allclose(r.segments_seconds, r.segments_frames / 50.0)
    s, e = r.segments_frames[0]
    np.testing.assert_allclose(r.embeddings[0], r.hidden_states[s:e].mean(0), rtol=1e-5, atol=1e-5)
    expect = greedy_segment(r.hidden_states, segmenter.norm_threshold, segmenter.merge_threshold)
    np.testing.assert_array_equal(r.segments_frames, expect)
    assert r.frame_rate == 50.0 and r.num_samples == len(wav)


def test_segment_many_equals_per_item(segmenter: Segmenter) -> None:
    waves = [speechlike(d, i) for i, d in enumerate([1.3, 0.4, 2.1, 0.9, 1.7, 0.02])]
    single = [segmenter(w) for w in waves]
    batched = segmenter.segment_many(waves, batch_seconds=4.0)
    assert sum(r.num_segments for r in single) >= 6
    for a, b in zip(single, batched):
        np.testing.assert_array_equal(a.segments_frames, b.segments_frames)
        np.testing.assert_allclose(a.hidden_states, b.hidden_states, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4, rtol=1e-4)
        assert a.num_samples == b.num_samples
    assert batched[-1].num_segments == 0  # 20 ms < the 400-sample receptive field of one frame


def test_paths_stereo_and_resampling(segmenter: Segmenter, tmp_path: Path) -> None:
    wav = speechlike(1.0, 3)
    path = tmp_path / "a.wav"
    write_audio(path, wav, SR, subtype="FLOAT")
    from_path = segmenter(path)
    from_array = segmenter(wav)
    np.testing.assert_array_equal(from_path.segments_frames, from_array.segments_frames)
    stereo = np.stack([wav, wav], axis=1)
    np.testing.assert_array_equal(segmenter(stereo).segments_frames, from_array.segments_frames)
    np.testing.assert_array_equal(segmenter(torch.from_numpy(stereo.T.copy())).segments_frames, from_array.segments_frames)
    r8 = segmenter(wav[::2].copy(), sample_rate=8000)
    assert r8.num_samples == len(wav) and r8.sample_rate == SR


def test_thresholds_are_live_attributes(segmenter: Segmenter) -> None:
    wav = speechlike(1.5, 4)
    old = segmenter.merge_threshold
    try:
        segmenter.merge_threshold = -1.0  # everything merges inside speech runs
        merged = segmenter(wav).num_segments
        segmenter.merge_threshold = 0.999
        split = segmenter(wav).num_segments
    finally:
        segmenter.merge_threshold = old
    assert split > merged >= 1
    with torch.inference_mode():  # callable inside inference mode
        assert segmenter(wav).num_segments >= 1


def test_bad_audio(segmenter: Segmenter, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioError, match="bad.wav"):
        segmenter(bad)
    with pytest.raises(AudioError, match="non-finite"):
        segmenter(np.array([0.0, np.nan] * 500, np.float32))
    with pytest.raises(AudioError):
        segmenter(np.zeros((2, 2, 10), np.float32))


def test_loads_checkpoint_path_and_export(tmp_path: Path) -> None:
    from speechunits.encoders.checkpoints import save_encoder

    m = randomised_tiny_model()
    save_encoder(tmp_path / "m.pt", m)
    seg = ExportedSegmenter(tmp_path / "m.pt", device="cpu", norm_threshold=1.0)
    wav = speechlike(0.8, 5)
    ref = Segmenter(m, device="cpu", norm_threshold=1.0)
    np.testing.assert_allclose(seg(wav).hidden_states, ref(wav).hidden_states, atol=1e-6)


def test_device_helpers() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with autocast_context("cpu", True):
        assert not torch.is_autocast_enabled("cpu")


# ------------------------------------------------------------------ where batches are segmented
def test_segment_on_device_equals_host(segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch) -> None:
    """segment_on="device" (the kernels replaced by a CPU stand-in) gives the host path's segments and means;
    without hidden states no frames come back."""
    import device_segmentation_standin as standin

    module = standin.install(monkeypatch)
    waves = [speechlike(d, 10 + i) for i, d in enumerate([1.3, 0.4, 2.1, 0.02, 0.9])]
    host = segmenter.segment_many(waves, batch_seconds=3.0)
    dev = Segmenter(segmenter.model, device="cpu", norm_threshold=segmenter.norm_threshold,
                    merge_threshold=segmenter.merge_threshold, segment_on="device")
    assert dev.segment_on == "device"
    got = dev.segment_many(waves, batch_seconds=3.0, hidden_states=False)
    assert module.calls["greedy"] >= 2 and module.calls["means"] >= 2  # one call per batch, not per utterance
    assert sum(r.num_segments for r in host) >= 5
    for a, b in zip(host, got):
        np.testing.assert_array_equal(a.segments_frames, b.segments_frames)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5, rtol=1e-5)
        assert b.embeddings.dtype == np.float32 and b.hidden_states is None and a.num_samples == b.num_samples
    assert got[3].num_segments == 0  # too short for a frame


def test_segment_on_choices(segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechunits.sylber.segment_batch import resolve_segment_on

    cpu = torch.device("cpu")
    assert resolve_segment_on("auto", cpu) == "host" and resolve_segment_on("host", cpu) == "host"
    with pytest.raises(ValueError, match="segment_on must be one of"):
        resolve_segment_on("gpu", cpu)
    import device_segmentation_standin as standin

    standin.install(monkeypatch, available=False)
    with pytest.raises(ValueError, match="cannot run on cpu"):
        resolve_segment_on("device", cpu)
    standin.install(monkeypatch, available=True)
    assert resolve_segment_on("auto", cpu) == "host"  # auto: the device kernels only for a CUDA encoder
    assert resolve_segment_on("device", cpu) == "device"


def test_host_batch_segmentation_reports_non_finite_rows(segmenter: Segmenter) -> None:
    """A row whose features are not finite is a failure from the batch path (and only that row)."""
    from speechunits.encoders.batch import DeviceBatch
    from speechunits.sylber.segment_batch import start_segmentation

    wav = speechlike(1.0, 21)
    feats = torch.from_numpy(segmenter(wav).hidden_states)
    t = feats.shape[0]
    padded = torch.zeros(2, t, feats.shape[1])
    padded[0], padded[1] = feats, feats
    padded[1, 3, 5] = float("nan")
    batch = DeviceBatch(["a", "b"], ["a.wav", "b.wav"], [len(wav)] * 2, [t, t], padded, torch.tensor([t, t]),
                        torch.tensor([True, False]))
    pending = start_segmentation(batch, "host", norm_threshold=segmenter.norm_threshold,
                                 merge_threshold=segmenter.merge_threshold)
    rows, failed = pending.result()
    assert [r.id for r in rows] == ["a"] and [f.id for f in failed] == ["b"]
    assert "b.wav: non-finite features" in failed[0].reason
    np.testing.assert_array_equal(rows[0].segments, greedy_segment(feats.numpy(), segmenter.norm_threshold,
                                                                   segmenter.merge_threshold))
