"""Greedy Sylber segmentation: numba kernel (both accumulator precisions) vs fixture vs the bit-exact numpy oracle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechunits.sylber.segment import (
    PRECISIONS,
    greedy_segment,
    greedy_segment_batch,
    segment_means,
    segments_to_seconds,
)
from speechunits.sylber.segment_reference import greedy_segment_reference, lane_dot_rows

FIXTURE = Path(__file__).parent / "data" / "greedy_segment_vectors.npz"
_VECTORS = np.load(FIXTURE)
CASES = sorted({k.split("__")[0] for k in _VECTORS.files})
HYP = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _case(name: str) -> tuple[np.ndarray, float, float, np.ndarray]:
    v = _VECTORS
    return (v[f"{name}__x"], float(v[f"{name}__norm_threshold"]), float(v[f"{name}__merge_threshold"]),
            v[f"{name}__segments"])


def test_fixture_has_all_cases() -> None:
    assert len(CASES) == 15
    for name in CASES:
        x, _, _, seg = _case(name)
        assert x.dtype == np.float32 and x.ndim == 2
        assert seg.dtype == np.int64 and seg.shape[1:] == (2,)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_numba_matches_fixture(name: str, precision: str) -> None:
    x, nt, mt, expected = _case(name)
    got = greedy_segment(x, nt, mt, precision=precision)
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_default_precision_is_float64() -> None:
    """The default must stay the one measured identical to the oracle on real features."""
    x, nt, mt, expected = _case("14_syll_d768_T500")
    assert PRECISIONS[0] == "float64"
    np.testing.assert_array_equal(greedy_segment(x, nt, mt), greedy_segment(x, nt, mt, precision="float64"))


@pytest.mark.parametrize("name", CASES)
def test_reference_matches_fixture(name: str) -> None:
    x, nt, mt, expected = _case(name)
    np.testing.assert_array_equal(greedy_segment_reference(x, nt, mt).reshape(-1, 2), expected.reshape(-1, 2))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fixture_batch_flat_and_padded(precision: str) -> None:
    names = [n for n in CASES if _case(n)[0].shape[1] == 64]
    xs = [_case(n)[0] for n in names]
    nts = [_case(n)[1] for n in names]
    mts = [_case(n)[2] for n in names]
    expected = [_case(n)[3] for n in names]
    for got, exp in zip(greedy_segment_batch(xs, norm_threshold=nts, merge_threshold=mts, precision=precision),
                        expected):
        np.testing.assert_array_equal(got.reshape(-1, 2), exp.reshape(-1, 2))
    lens = np.array([x.shape[0] for x in xs])
    padded = np.full((len(xs), lens.max(), 64), 100.0, np.float32)  # loud padding must be ignored
    for i, x in enumerate(xs):
        padded[i, : len(x)] = x
    for got, exp in zip(greedy_segment_batch(padded, lens, nts, mts, precision=precision), expected):
        np.testing.assert_array_equal(got.reshape(-1, 2), exp.reshape(-1, 2))


# ------------------------------------------------------------------------------------------
# random inputs: kernel == reference, batch == loop, structural properties
# ------------------------------------------------------------------------------------------


@st.composite
def utterances(draw: st.DrawFn, max_frames: int = 40, dim: int | None = None, jitter: float = 0.0) -> np.ndarray:
    """Syllable-like frames: palette runs (exact repeats), exact silence, noise, glides between vectors.

    ``jitter`` > 0 adds that much Gaussian noise to every non-silent frame: no exact repeats, so
    no exact ties, which is what "well conditioned" means below.
    """
    d = dim if dim is not None else draw(st.sampled_from([1, 2, 3, 8, 11, 16]))
    n_pal = draw(st.integers(1, 4))
    palette = np.array(
        draw(st.lists(st.lists(st.integers(-3, 3), min_size=d, max_size=d), min_size=n_pal, max_size=n_pal)),
        np.float32,
    )
    kinds = draw(st.lists(st.tuples(st.sampled_from(["pal", "pal", "sil", "rand", "scaled", "drift"]),
                                    st.integers(0, n_pal - 1), st.integers(1, 8)), max_size=max_frames))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    rows = []
    for kind, idx, run in kinds:
        for r in range(run if kind != "rand" else 1):
            if kind == "sil":
                rows.append(np.zeros(d, np.float32))
            elif kind == "pal":
                rows.append(palette[idx])
            elif kind == "drift":  # glide from one palette vector to the next (running mean matters)
                alpha = r / run
                nxt = palette[(idx + 1) % n_pal]
                rows.append(((1 - alpha) * palette[idx] + alpha * nxt).astype(np.float32))
            elif kind == "scaled":
                rows.append(palette[idx] * np.float32(rng.uniform(0.5, 3.0)) + rng.normal(0, 0.2, d).astype(np.float32))
            else:
                rows.append(rng.normal(0, 2.0, d).astype(np.float32))
    x = np.array(rows, np.float32).reshape(-1, d)
    if jitter:
        loud = np.abs(x).sum(axis=1) > 0
        x[loud] += rng.normal(0, jitter, (int(loud.sum()), d)).astype(np.float32)
    return x[:max_frames * 3]


thresholds = st.tuples(st.sampled_from([0.0, 0.5, 2.6, 4.0]), st.sampled_from([-0.3, 0.0, 0.5, 0.8, 0.95, 1.0]))


def _check_properties(x: np.ndarray, seg: np.ndarray, nt: float) -> None:
    assert seg.dtype == np.int64 and seg.ndim == 2 and seg.shape[1] == 2
    if len(seg) == 0:
        speech = np.sqrt((x.astype(np.float64) ** 2).sum(1) + 1e-8) >= nt
        assert not speech.any() if len(x) else True
        return
    assert (seg[:, 0] >= 0).all() and (seg[:, 1] <= len(x)).all()
    assert (seg[:, 1] > seg[:, 0]).all()  # no empty segments
    assert (seg[1:, 0] >= seg[:-1, 1]).all()  # sorted, non-overlapping
    # segments cover exactly the speech frames (up to float rounding at the threshold)
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(1) + 1e-8)
    covered = np.zeros(len(x), bool)
    for s, e in seg:
        covered[s:e] = True
    clear = np.abs(norms - nt) > 1e-9 * max(1.0, nt)
    np.testing.assert_array_equal(covered[clear], (norms >= nt)[clear])
    assert (norms[seg[:, 0]] >= nt - 1e-9).all()  # only speech frames start segments


@HYP
@given(x=utterances(jitter=0.01), th=thresholds, reset=st.booleans())
def test_default_equals_oracle_well_conditioned(x: np.ndarray, th: tuple[float, float], reset: bool) -> None:
    """float64 accumulators in another order differ from the oracle by ~1e-16 relative: only an
    exact tie (or a cosine within that of the threshold) could decide differently."""
    nt, mt = th
    got = greedy_segment(x, nt, mt, reset_count=reset)
    ref = greedy_segment_reference(x, nt, mt, reset_count=reset)
    np.testing.assert_array_equal(got, ref)
    _check_properties(x, got, nt)


@HYP
@given(x=utterances(), th=thresholds, reset=st.booleans(), precision=st.sampled_from(PRECISIONS))
def test_properties_with_exact_repeats(x: np.ndarray, th: tuple[float, float], reset: bool, precision: str) -> None:
    """Exact repeats make exact ties, which summation order may break either way: check the
    structure (and that the float64 default still agrees with the oracle on most of it)."""
    nt, mt = th
    got = greedy_segment(x, nt, mt, reset_count=reset, precision=precision)
    _check_properties(x, got, nt)


def test_exact_repeats_mostly_equal_oracle() -> None:
    """On tie-prone palette data the default still agrees with the oracle (seeded, 200 draws)."""
    same = total = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        d = int(rng.choice([2, 3, 8, 16]))
        palette = rng.integers(-3, 4, (4, d)).astype(np.float32)
        runs = [palette[rng.integers(0, 4)] if rng.random() > 0.2 else np.zeros(d, np.float32)
                for _ in range(rng.integers(1, 25))]
        x = np.repeat(np.array(runs), rng.integers(1, 6, len(runs)), axis=0)
        for nt, mt in ((2.6, 0.8), (0.5, 0.5)):
            total += 1
            same += np.array_equal(greedy_segment(x, nt, mt), greedy_segment_reference(x, nt, mt))
    assert same >= 0.98 * total, f"{same}/{total}"


def test_float32_equals_oracle_on_noisy_features() -> None:
    """float32 accumulators (seeded data, d = 768 as in HuBERT): decisions as the oracle's."""
    rng = np.random.default_rng(1)
    for T in (300, 700):
        centers = rng.normal(size=(T // 8 + 1, 768)).astype(np.float32)
        x = np.repeat(centers, 8, axis=0)[:T] * np.float32(0.2)
        x += rng.normal(0, 0.08, x.shape).astype(np.float32)
        x[rng.random(T) < 0.05] *= np.float32(0.01)  # some silent frames
        for mt in (0.5, 0.8):
            ref = greedy_segment_reference(x, 2.6, mt)
            assert len(ref) > 10
            np.testing.assert_array_equal(greedy_segment(x, 2.6, mt, precision="float32"), ref)
            np.testing.assert_array_equal(greedy_segment(x, 2.6, mt), ref)


@settings(deadline=None, max_examples=60)
@given(d=st.sampled_from([1, 5, 8, 13, 768]), m=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_lane_dot_is_a_dot_product(d: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(m, d)).astype(np.float32)
    vec = rng.normal(size=d)
    np.testing.assert_allclose(lane_dot_rows(rows, vec), rows.astype(np.float64) @ vec, rtol=1e-12, atol=1e-12)


@settings(deadline=None, max_examples=40)
@given(
    xs=st.lists(utterances(max_frames=20, dim=8), min_size=1, max_size=6),
    mts=st.lists(st.sampled_from([0.3, 0.8, 0.95]), min_size=6, max_size=6),
    reset=st.booleans(),
)
def test_batch_equals_loop_and_padded_equals_flat(xs: list[np.ndarray], mts: list[float], reset: bool) -> None:
    mt = np.array(mts[: len(xs)])
    loop = [greedy_segment(x, 2.6, m, reset_count=reset) for x, m in zip(xs, mt)]
    from_list = greedy_segment_batch(xs, merge_threshold=mt, reset_count=reset)
    lens = np.array([len(x) for x in xs])
    flat = np.concatenate(xs, axis=0)
    from_flat = greedy_segment_batch(flat, lens, merge_threshold=mt, reset_count=reset)
    padded = np.zeros((len(xs), max(1, lens.max()), 8), np.float32)
    padded[:] = np.float32(7.0)  # speech-like padding: would change results if not trimmed
    for i, x in enumerate(xs):
        padded[i, : len(x)] = x
    from_padded = greedy_segment_batch(padded, lens, merge_threshold=mt, reset_count=reset)
    assert len(from_list) == len(from_flat) == len(from_padded) == len(xs)
    for a, b, c, d in zip(loop, from_list, from_flat, from_padded):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_batch_equals_single_any_thread_count(precision: str) -> None:
    """Many utterances of mixed lengths (handed out longest first): identical on 1 and 2 threads."""
    rng = np.random.default_rng(3)
    lens = rng.integers(0, 120, 60)
    xs = [np.repeat(rng.normal(size=(n // 5 + 1, 32)), 5, axis=0)[:n].astype(np.float32) * 3
          + rng.normal(0, 0.3, (n, 32)).astype(np.float32) for n in lens]
    loop = [greedy_segment(x, 2.6, 0.8, precision=precision) for x in xs]
    before = numba.get_num_threads()
    try:
        for k in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(k)
            got = greedy_segment_batch(xs, None, 2.6, 0.8, precision=precision)
            for a, b in zip(loop, got):
                np.testing.assert_array_equal(a, b)
    finally:
        numba.set_num_threads(before)


def test_batch_scalar_thresholds_and_empty_utterances() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 2, (n, 4)).astype(np.float32) for n in (0, 5, 0, 9)]
    out = greedy_segment_batch(xs, norm_threshold=1.0, merge_threshold=0.5)
    assert [o.shape for o in out][0] == (0, 2) and out[2].shape == (0, 2)
    for o, x in zip(out, xs):
        np.testing.assert_array_equal(o, greedy_segment(x, 1.0, 0.5))
    assert greedy_segment_batch([]) == []


# ------------------------------------------------------------------------------------------
# the running-count quirk, by hand
# ------------------------------------------------------------------------------------------


def _unit_frames(angles_deg: list[float], radius: float = 5.0) -> np.ndarray:
    a = np.deg2rad(np.asarray(angles_deg, np.float64))
    return (radius * np.stack([np.cos(a), np.sin(a)], axis=1)).astype(np.float32)


def test_reset_count_variant_differs_on_constructed_case() -> None:
    """2-D frames of norm 5 at angles -90, -90, 0, 30, 45, 60, 60 degrees (merge 0.8 = 36.9 deg).

    Frame 2 (0 deg) is 90 deg from the first segment: split. The reference keeps the count
    (3 after the split), so after frame 3 (30 deg) the running mean is (3*f2 + f3)/4, at
    atan(0.5 / (3 + cos 30)) = 7.4 deg, and frame 4 (45 deg) is 37.6 deg away: a second split at 4.
    With the count reset to 1 the mean is (f2 + f3)/2 at 15 deg, frame 4 is 30 deg away and
    joins, then 60 and 60 join too. Merging: the segments [2, 4) (mean 15 deg) and [4, 7)
    (mean 55 deg) are 40 deg apart (cos 0.766 < 0.8) and stay split; the boundary sweep over
    frames 3..4 keeps 4 (cos 15 + cos 10 beats cos 25 + cos 10).
    """
    x = _unit_frames([-90, -90, 0, 30, 45, 60, 60])
    quirk_mean = (3 * x[2].astype(np.float64) + x[3]) / 4
    reset_mean = (x[2].astype(np.float64) + x[3]) / 2

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    assert cos(quirk_mean, x[4]) < 0.8 <= cos(reset_mean, x[4])
    default = greedy_segment(x)
    corrected = greedy_segment(x, reset_count=True)
    np.testing.assert_array_equal(default, [[0, 2], [2, 4], [4, 7]])
    np.testing.assert_array_equal(corrected, [[0, 2], [2, 7]])
    np.testing.assert_array_equal(greedy_segment_reference(x), default)
    np.testing.assert_array_equal(greedy_segment_reference(x, reset_count=True), corrected)


def test_reset_count_changes_some_fixture_cases() -> None:
    changed = [n for n in CASES if not np.array_equal(greedy_segment(_case(n)[0], *_case(n)[1:3], reset_count=True),
                                                        _case(n)[3].reshape(-1, 2))]
    assert changed  # the fixture is made with the quirk: the corrected variant must differ somewhere


# ------------------------------------------------------------------------------------------
# edge cases and validation
# ------------------------------------------------------------------------------------------


def test_edge_cases() -> None:
    assert greedy_segment(np.zeros((0, 5), np.float32)).shape == (0, 2)
    assert greedy_segment(np.zeros((10, 5), np.float32)).shape == (0, 2)
    one = np.full((1, 4), 3.0, np.float32)
    np.testing.assert_array_equal(greedy_segment(one), [[0, 1]])
    same = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (20, 1))
    np.testing.assert_array_equal(greedy_segment(same), [[0, 20]])
    # silence splits identical speech into separate segments
    gap = same.copy()
    gap[7:9] = 0
    np.testing.assert_array_equal(greedy_segment(gap), [[0, 7], [9, 20]])


def test_dtype_conversion_and_torch() -> None:
    x, nt, mt, expected = _case("02_syll_d64_T500")
    np.testing.assert_array_equal(greedy_segment(x.astype(np.float64), nt, mt), expected)
    np.testing.assert_array_equal(greedy_segment(np.asfortranarray(x), nt, mt), expected)
    half = x.astype(np.float16)
    np.testing.assert_array_equal(greedy_segment(half, nt, mt), greedy_segment(half.astype(np.float32), nt, mt))
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(greedy_segment(torch.from_numpy(x), nt, mt), expected)
    np.testing.assert_array_equal(greedy_segment(torch.from_numpy(x).to(torch.bfloat16), nt, mt),
                                  greedy_segment(torch.from_numpy(x).to(torch.bfloat16).float().numpy(), nt, mt))


@pytest.mark.parametrize(
    ("states", "kwargs", "error", "match"),
    [
        (np.ones(5, np.float32), {}, ValueError, "2-D"),
        (np.ones((2, 3, 4), np.float32), {}, ValueError, "2-D"),
        (np.ones((3, 4), np.int64), {}, TypeError, "floating"),
        (np.ones((3, 0), np.float32), {}, ValueError, "dimension is 0"),
        (np.array([[1.0, np.nan]], np.float32), {}, ValueError, "non-finite .* frame 0"),
        (np.array([[1.0, 1.0], [np.inf, 0]], np.float32), {}, ValueError, "frame 1"),
        (np.array([[1e300, 1.0]]), {}, ValueError, "non-finite"),
        (np.ones((3, 4), np.float32), {"merge_threshold": 1.5}, ValueError, "merge_threshold"),
        (np.ones((3, 4), np.float32), {"norm_threshold": float("nan")}, ValueError, "norm_threshold"),
        (np.ones((3, 4), np.float32), {"norm_threshold": -1.0}, ValueError, "norm_threshold"),
    ],
)
def test_validation_errors(states: np.ndarray, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        greedy_segment(states, **kwargs)
    with pytest.raises(error, match=match):
        greedy_segment_reference(states, **kwargs)


def test_non_finite_found_by_the_kernel() -> None:
    """The kernels check finiteness in their own pass (no separate isfinite pass)."""
    x = np.ones((6, 4), np.float32) * 3
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"states\[1\]: non-finite .* frame 4"):
        greedy_segment_batch([x, bad])
    with pytest.raises(ValueError, match=r"utterance 1\): non-finite .* frame 4"):
        greedy_segment_batch(np.concatenate([x, bad]), [6, 6])
    padded = np.stack([x, x])
    padded[1, 5] = np.inf  # padding beyond the length is never read
    assert [len(s) for s in greedy_segment_batch(padded, [6, 5])] == [1, 1]
    huge = np.full((3, 4), 1e20, np.float32)  # finite, but its squared norm overflows float32
    np.testing.assert_array_equal(greedy_segment(huge), [[0, 3]])
    with pytest.raises(ValueError, match="overflows float32"):
        greedy_segment(huge, precision="float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        greedy_segment(x, precision="float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        greedy_segment_batch([x], precision="bfloat16")


def test_batch_validation_errors() -> None:
    x = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match="required"):
        greedy_segment_batch(x)
    with pytest.raises(ValueError, match="sum 5"):
        greedy_segment_batch(x, [2, 3])
    with pytest.raises(ValueError, match="exceeds"):
        greedy_segment_batch(x[None], [7])
    with pytest.raises(ValueError, match="negative"):
        greedy_segment_batch(x[None], [-1])
    with pytest.raises(ValueError, match="one value per utterance"):
        greedy_segment_batch([x, x], merge_threshold=[0.8, 0.8, 0.8])
    with pytest.raises(ValueError, match="different feature dimensions"):
        greedy_segment_batch([x, np.ones((3, 5), np.float32)])
    with pytest.raises(ValueError, match=r"states\[1\].*2-D"):
        greedy_segment_batch([x, np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="expected a list"):
        greedy_segment_batch(np.ones(4, np.float32), [4])


# ------------------------------------------------------------------------------------------
# segment means / seconds / lazy compilation
# ------------------------------------------------------------------------------------------


def test_segment_means() -> None:
    x, nt, mt, seg = _case("14_syll_d768_T500")
    means = segment_means(x, seg)
    assert means.shape == (len(seg), 768) and means.dtype == np.float32
    expected = np.stack([x[s:e].astype(np.float64).mean(0) for s, e in seg]).astype(np.float32)
    np.testing.assert_allclose(means, expected, rtol=1e-6, atol=1e-6)
    exact = np.stack([np.add.accumulate(x[s:e].astype(np.float64), axis=0)[-1] / (e - s) for s, e in seg])
    np.testing.assert_array_equal(means, exact.astype(np.float32))
    assert segment_means(x, np.zeros((0, 2), np.int64)).shape == (0, 768)
    with pytest.raises(ValueError, match="row 0"):
        segment_means(x, [[3, 3]])
    with pytest.raises(ValueError, match="outside"):
        segment_means(x, [[0, 501]])
    with pytest.raises(TypeError, match="integer"):
        segment_means(x, np.array([[0.0, 2.0]]))


def test_segments_to_seconds() -> None:
    sec = segments_to_seconds(np.array([[0, 5], [10, 60]]), frame_rate=50.0)
    np.testing.assert_allclose(sec, [[0.0, 0.1], [0.2, 1.2]])
    assert segments_to_seconds(np.zeros((0, 2), np.int64)).shape == (0, 2)
    with pytest.raises(ValueError, match="frame_rate"):
        segments_to_seconds([[0, 1]], frame_rate=0)


def test_import_does_not_compile() -> None:
    code = (
        "import speechunits.sylber.segment as m\n"
        "fs = [m._segment_single, m._segment_many, m._segment_core, m._settle_boundary, m._means]\n"
        "assert all(not f.signatures for f in fs), [f.signatures for f in fs]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
