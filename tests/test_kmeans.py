"""K-means, codebook files and embedding sampling (speechunits.quantize)."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch

from speechunits.errors import CheckpointError, ConfigError
import speechunits.quantize.kmeans as km
import speechunits.quantize.kmeans_ops as ops
from speechunits.quantize.codebook import Assigner, assign, codebook_hash, load_codebook, save_codebook, sidecar_path
from speechunits.quantize.kmeans import assign_chunked, kmeans
from speechunits.quantize.sampling import reservoir_sample


def ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)
    s_ij = sum(comb(int(v), 2) for v in table.ravel())
    s_a = sum(comb(int(v), 2) for v in table.sum(1))
    s_b = sum(comb(int(v), 2) for v in table.sum(0))
    expected = s_a * s_b / comb(len(a), 2)
    top = (s_a + s_b) / 2
    return 1.0 if top == expected else (s_ij - expected) / (top - expected)


def blobs(n: int = 600, k: int = 6, dim: int = 8, spread: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 10
    labels = np.arange(n) % k
    rng.shuffle(labels)
    return (centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32), labels


def directions(n: int = 600, k: int = 5, dim: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Clusters by direction only: each point has a random norm in [0.05, 20]."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(k, dim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    labels = np.arange(n) % k
    unit = dirs[labels] + 0.05 * rng.normal(size=(n, dim))
    norms = rng.uniform(0.05, 20.0, size=(n, 1))
    return (unit * norms).astype(np.float32), labels


def test_ari_helper_sanity() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    assert ari(a, np.array([5, 5, 3, 3, 9, 9])) == pytest.approx(1.0)
    assert ari(a, np.array([0, 1, 0, 1, 0, 1])) < 0.1


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_recovers_separated_clusters(metric: str) -> None:
    x, y = blobs() if metric == "euclidean" else directions()
    k = int(y.max()) + 1
    res = kmeans(x, k, metric=metric, seed=3, progress=False)
    labels = assign(x, res.centroids.numpy(), metric)
    assert ari(labels, y) == pytest.approx(1.0)
    assert res.converged
    assert res.centroids.shape == (k, x.shape[1])
    # inertia decreases (non-strictly) over Lloyd iterations
    assert all(b <= a * (1 + 1e-6) + 1e-6 for a, b in zip(res.history, res.history[1:]))


def test_cosine_clusters_by_direction_not_norm() -> None:
    x, y = directions(k=4)
    cos = kmeans(x, 4, metric="cosine", seed=0, progress=False)
    assert ari(assign(x, cos.centroids.numpy(), "cosine"), y) == pytest.approx(1.0)
    assert torch.allclose(cos.centroids.norm(dim=1), torch.ones(4), atol=1e-5)
    # euclidean k-means on the same data groups by norm and fails to find the directions
    euc = kmeans(x, 4, metric="euclidean", seed=0, progress=False)
    assert ari(assign(x, euc.centroids.numpy(), "euclidean"), y) < 0.9


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_minibatch_recovers_clusters(metric: str) -> None:
    x, y = blobs(n=2000, k=5) if metric == "euclidean" else directions(n=2000, k=5)
    res = kmeans(x, 5, metric=metric, batch_size=128, iters=300, seed=0, progress=False)
    assert ari(assign(x, res.centroids.numpy(), metric), y) == pytest.approx(1.0)
    full = kmeans(x, 5, metric=metric, seed=0, progress=False)
    assert res.inertia == pytest.approx(full.inertia, rel=0.02)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_deterministic_for_seed(batch_size: int | None) -> None:
    x, _ = blobs(n=500, k=8, spread=3.0)
    a = kmeans(x, 8, seed=11, batch_size=batch_size, iters=30, progress=False)
    b = kmeans(x, 8, seed=11, batch_size=batch_size, iters=30, progress=False)
    assert torch.equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia and a.history == b.history
    c = kmeans(x, 8, seed=12, batch_size=batch_size, iters=30, progress=False)
    assert not torch.equal(a.centroids, c.centroids)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_chunked_assignment_equals_unchunked(metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(503, 16)).astype(np.float32)
    c = rng.normal(size=(37, 16)).astype(np.float32)
    whole, d_whole = assign_chunked(torch.from_numpy(x), torch.from_numpy(c), metric, chunk_rows=10_000)
    for rows in (1, 7, 64, 502):
        part, d_part = assign_chunked(torch.from_numpy(x), torch.from_numpy(c), metric, chunk_rows=rows)
        assert torch.equal(part, whole)
        assert torch.allclose(d_part, d_whole)
    # and both equal a brute-force numpy reference
    if metric == "euclidean":
        ref = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    else:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        cn = c / np.linalg.norm(c, axis=1, keepdims=True)
        ref = (xn @ cn.T).argmax(1)
    assert np.array_equal(whole.numpy(), ref)
    assert np.array_equal(assign(x, c, metric, chunk_rows=13), ref)


def test_distance_blocks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """No (N x K) matrix: every distance block has at most chunk_rows rows."""
    seen: list[tuple[int, int]] = []
    real = ops.block_scores

    def spy(xb, c_op, c_sq, metric, precision):  # type: ignore[no-untyped-def]
        out = real(xb, c_op, c_sq, metric, precision)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(ops, "block_scores", spy)  # assignment
    monkeypatch.setattr(km, "block_scores", spy)  # seeding
    x, _ = blobs(n=400, k=4)
    kmeans(x, 4, chunk_rows=50, init_sample=100, seed=0, progress=False)
    assert seen and max(r for r, _ in seen if _ == 4) <= 100  # k-means++ on the 100-row sample
    lloyd_blocks = [r for r, kk in seen if kk == 4]
    assert max(lloyd_blocks) <= 100 and 50 in lloyd_blocks
    assert km.auto_chunk_rows(1000, block_elements=1 << 20) == 1048


def test_empty_cluster_is_reseeded() -> None:
    x, y = blobs(n=400, k=4)
    centres = np.stack([x[y == j].mean(0) for j in range(3)] + [np.full(x.shape[1], 1e4, dtype=np.float32)])
    res = kmeans(x, 4, init=centres, seed=0, progress=False)
    assert res.reseeded >= 1
    assert ari(assign(x, res.centroids.numpy(), "euclidean"), y) == pytest.approx(1.0)
    assert torch.isfinite(res.centroids).all()


def test_duplicate_points_and_k_equal_n() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 distinct points, 12 rows
    res = kmeans(x, 3, seed=0, progress=False)
    assert res.inertia == pytest.approx(0.0, abs=1e-6)
    res = kmeans(x, 5, seed=0, iters=5, progress=False)  # more clusters than distinct points
    assert torch.isfinite(res.centroids).all() and res.inertia == pytest.approx(0.0, abs=1e-6)
    small = np.arange(12, dtype=np.float32).reshape(4, 3)
    res = kmeans(small, 4, seed=0, progress=False)
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments() -> None:
    x, _ = blobs(n=20, k=2)
    with pytest.raises(ConfigError, match="larger than the number of vectors"):
        kmeans(x, 21, progress=False)
    with pytest.raises(ConfigError, match="positive integer"):
        kmeans(x, 0, progress=False)
    with pytest.raises(ConfigError, match="metric"):
        kmeans(x, 2, metric="manhattan", progress=False)
    with pytest.raises(ConfigError, match="2-D"):
        kmeans(x[0], 2, progress=False)
    with pytest.raises(ConfigError, match="init must have shape"):
        kmeans(x, 2, init=np.zeros((3, x.shape[1])), progress=False)


def test_float16_input_matches_float32() -> None:
    x, y = blobs(n=300, k=3)
    res = kmeans(x.astype(np.float16), 3, seed=0, progress=False)
    assert ari(assign(x.astype(np.float16), res.centroids.numpy(), "euclidean"), y) == pytest.approx(1.0)


# ------------------------------------------------------------------ codebook files
@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_codebook_roundtrip(tmp_path, suffix: str) -> None:
    cent = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    path = tmp_path / f"km{suffix}"
    saved = save_codebook(path, cent, metric="cosine", seed=3, inertia=1.5, source_hash="abc")
    book = load_codebook(path)
    assert np.array_equal(book.centroids, cent)
    assert (book.k, book.dim, book.metric) == (7, 5, "cosine")
    assert book.meta["seed"] == 3 and book.meta["inertia"] == 1.5 and book.meta["source_hash"] == "abc"
    assert codebook_hash(path) == saved.hash == book.hash
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".json"])


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_codebook_file_is_the_same_bytes_every_time(tmp_path, suffix: str) -> None:
    """torch.save given a path names the zip's records after it, and the atomic write's temporary
    has a random name: the same codebook came out different byte for byte on every save (chaos
    harness, frame-units, issue 17)."""
    cent = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    path = tmp_path / f"km{suffix}"
    save_codebook(path, cent, metric="euclidean", seed=0)
    first = path.read_bytes()
    save_codebook(path, cent, metric="euclidean", seed=0)
    assert path.read_bytes() == first


def test_codebook_hash_is_format_independent_and_content_sensitive(tmp_path) -> None:
    cent = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    save_codebook(tmp_path / "a.pt", cent, metric="euclidean")
    save_codebook(tmp_path / "b.npy", cent, metric="euclidean")
    save_codebook(tmp_path / "c.npy", cent, metric="cosine")
    cent2 = cent.copy()
    cent2[0, 0] += 1e-3
    save_codebook(tmp_path / "d.npy", cent2, metric="euclidean")
    h = [codebook_hash(tmp_path / n) for n in ("a.pt", "b.npy", "c.npy", "d.npy")]
    assert h[0] == h[1] and len(set(h)) == 3


def test_codebook_corruption_is_detected(tmp_path) -> None:
    cent = np.ones((3, 2), dtype=np.float32)
    path = tmp_path / "km.npy"
    save_codebook(path, cent, metric="euclidean")
    np.save(path, cent * 2)  # centroid file replaced behind the sidecar's back
    with pytest.raises(CheckpointError, match="does not match"):
        load_codebook(path)
    pt = tmp_path / "km.pt"
    save_codebook(pt, cent, metric="euclidean")
    pt.write_bytes(pt.read_bytes()[:50])  # truncated
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_codebook(pt)
    save_codebook(pt, cent, metric="euclidean")
    sidecar_path(pt).unlink()
    with pytest.raises(CheckpointError, match="missing codebook metadata"):
        load_codebook(pt)
    with pytest.raises(ConfigError, match="must end in"):
        save_codebook(tmp_path / "km.bin", cent, metric="euclidean")
    meta = json.loads((tmp_path / "km.npy.json").read_text())
    assert meta["k"] == 3 and meta["dim"] == 2


def test_assign_checks_metric_and_dim() -> None:
    cent = np.eye(3, dtype=np.float32)
    with pytest.raises(ConfigError, match="metric is required"):
        assign(np.zeros((2, 3)), cent)
    with pytest.raises(ConfigError, match="match the codebook"):
        Assigner(cent, "euclidean")(np.zeros((2, 4), dtype=np.float32))
    assert assign(np.zeros((0, 3), dtype=np.float32), cent, "euclidean").shape == (0,)


# ------------------------------------------------------------------ sampling
def test_reservoir_sample_is_uniform_and_deterministic() -> None:
    blocks = [np.arange(i, i + 10, dtype=np.float32)[:, None] for i in range(0, 100, 10)]
    a, seen = reservoir_sample(blocks, 10, seed=5)
    b, _ = reservoir_sample(blocks, 10, seed=5)
    assert seen == 100 and np.array_equal(a, b) and len(np.unique(a)) == 10
    counts = np.zeros(100)
    for seed in range(1500):
        s, _ = reservoir_sample(blocks, 10, seed=seed)
        counts[s[:, 0].astype(int)] += 1
    freq = counts / 1500  # each row kept with probability 0.1
    assert np.abs(freq - 0.1).max() < 0.04
    assert abs(freq[:10].mean() - freq[-10:].mean()) < 0.02
    small, seen = reservoir_sample(blocks[:1], 50, seed=0)
    assert seen == 10 and np.array_equal(small[:, 0], np.arange(10))


# ------------------------------------------------------------------ issue 15: GPU-ready k-means
def mixture(n: int = 6000, dim: int = 32, k: int = 40, offset: float = 0.0, seed: int = 1) -> np.ndarray:
    """Overlapping Gaussian mixture (2k components of unit spread, centres at scale 3): many near ties."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2 * k, dim)).astype(np.float32) * 3 + offset
    return centres[rng.integers(0, 2 * k, n)] + rng.standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("method", ["sorted", "index_add"])
def test_cluster_sums_equal_float64_reference(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skewed cluster sizes, empty clusters, and (sorted) segments crossing chunk boundaries."""
    rng = np.random.default_rng(0)
    k, dim = 50, 12
    labels = np.minimum(rng.geometric(0.08, size=3001) - 1, k - 1)  # cluster 0 large, some never hit
    labels[labels == 7] = 8  # cluster 7 empty for sure
    x = (rng.normal(size=(len(labels), dim)) * 10 + 3).astype(np.float32)
    monkeypatch.setattr(ops, "SUM_BLOCK_ELEMENTS", 97 * dim)  # 97-row chunks: 31 of them
    monkeypatch.setattr(ops, "SUM_CHUNK_ROWS", 97)
    sums, counts = km.cluster_sums(torch.from_numpy(x), torch.from_numpy(labels), k, method=method)
    ref = np.zeros((k, dim))
    np.add.at(ref, labels, x.astype(np.float64))
    assert sums.dtype == torch.float64 and counts.dtype == torch.float64
    assert np.array_equal(counts.numpy(), np.bincount(labels, minlength=k))
    assert counts[7] == 0 and np.all(sums[7].numpy() == 0)
    np.testing.assert_allclose(sums.numpy(), ref, rtol=1e-6, atol=1e-4)


def test_sorted_sums_match_index_add_bitwise_and_are_deterministic() -> None:
    """Both add each cluster's rows in row order from zero (one chunk): the same float32 bits."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(5000, 24)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 300, 5000))
    a, ca = km.cluster_sums(x, labels, 300, method="sorted")
    b, cb = km.cluster_sums(x, labels, 300, method="index_add")
    assert torch.equal(a, b) and torch.equal(ca, cb)
    assert torch.equal(a, km.cluster_sums(x, labels, 300, method="sorted")[0])
    xs, _ = blobs(n=800, k=6)
    r1 = kmeans(xs, 6, seed=2, centroid_sums="sorted", progress=False)
    r2 = kmeans(xs, 6, seed=2, centroid_sums="index_add", progress=False)
    assert torch.equal(r1.centroids, r2.centroids) and r1.history == r2.history


def test_device_paths_never_read_device_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the meta device every host sync (.item(), int(), bool(), nonzero) raises: assignment, sorted
    sums and seeding run there, so they queue work without waiting for it (the CUDA code paths,
    bf16 ``mm(out_dtype=float32)`` included)."""
    meta = torch.device("meta")
    x = torch.empty(1000, 16, device=meta)
    c = torch.empty(10, 16, device=meta)
    for precision in km.PRECISIONS:
        for metric in km.METRICS:
            labels, dists = assign_chunked(x, c, metric, 64, prepared=True, precision=precision,
                                           center=torch.empty(16, device=meta))
            assert labels.dtype == torch.int64 and dists.dtype == torch.float32 and labels.shape == (1000,)
    sums, counts = km.cluster_sums(x, torch.empty(1000, dtype=torch.int64, device=meta), 10, method="sorted")
    assert sums.shape == (10, 16) and counts.shape == (10,)
    monkeypatch.setattr(km, "_device_generator", lambda gen, dev: None)  # meta has no generator
    seeds = km.kmeans_plusplus(x, 12, "euclidean", torch.Generator().manual_seed(0), batch=5, precision="bf16",
                               center=torch.empty(16, device=meta))
    assert seeds.shape == (12, 16)
    c_op = torch.empty(10, 16, dtype=torch.bfloat16, device=meta)
    scores = ops.block_scores(x.bfloat16(), c_op, torch.empty(10, device=meta), "euclidean", "bf16")
    assert scores.dtype == torch.float32 and scores.shape == (1000, 10)


def test_matmul_precision_scope_sets_and_restores_cuda_flags() -> None:
    mm = torch.backends.cuda.matmul
    read = (lambda: mm.fp32_precision) if hasattr(mm, "fp32_precision") else (lambda: mm.allow_tf32)
    before = read()
    cuda = torch.device("cuda")  # the flags exist without a GPU
    with km.matmul_precision_scope("tf32", cuda):
        assert read() in ("tf32", True)
        with km.matmul_precision_scope("fp32", cuda):
            assert read() in ("ieee", False)
        assert read() in ("tf32", True)
    assert read() == before
    assert km.resolve_precision("auto", cuda) == "tf32" and km.resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ConfigError, match="matmul_precision"):
        km.resolve_precision("fp8", cuda)
    with pytest.raises(ConfigError, match="only on the CPU"):
        km.resolve_sum_method("index_add", cuda)


def test_round_tf32_keeps_ten_mantissa_bits_ties_to_even() -> None:
    one = 1.0
    t = torch.tensor([one + 2**-11, one + 3 * 2**-11, one + 2**-10, -(one + 2**-12), 3.0, 0.0, -1.5e-30])
    r = km.round_tf32(t)
    assert r.tolist()[:3] == [1.0, 1.0 + 2**-9, 1.0 + 2**-10]  # halfway: to the even neighbour
    assert r[3] == -1.0 and r[4] == 3.0 and r[5] == 0.0
    v = torch.from_numpy(np.random.default_rng(0).normal(size=10000).astype(np.float32) * 1e3)
    rv = km.round_tf32(v)
    assert (rv.view(torch.int32) & 0x1FFF).eq(0).all()
    assert ((rv - v).abs() <= v.abs() * 2**-11).all() and not torch.equal(rv, v)


@pytest.mark.parametrize("precision, unit", [("tf32", 2**-11), ("bf16", 2**-8)])
def test_low_precision_assignment_is_near_optimal(precision: str, unit: float) -> None:
    """Low-precision matmuls only change which centroid wins among near ties: each chosen centroid is
    within the operand-rounding bound of the best one (exact float32 distances), and the returned
    distances are the exact ones."""
    x = torch.from_numpy(mixture(offset=30.0))
    c = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:40]].clone()
    center = x.mean(0)
    ref, _ = assign_chunked(x, c, "euclidean", 500, prepared=True, center=center)
    lab, dist = assign_chunked(x, c, "euclidean", 500, prepared=True, precision=precision, center=center)
    exact = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    best = exact.gather(1, ref[:, None])[:, 0]
    chosen = exact.gather(1, lab[:, None])[:, 0]
    assert torch.allclose(dist, chosen, rtol=1e-5, atol=1e-3)
    # |score error| <= ~2 * 2u |x - m| |c - m| per centroid (two rounded operands), twice for a swap
    bound = 8 * unit * (x - center).norm(dim=1) * (c - center).norm(dim=1).max() + 1e-3
    assert (chosen - best <= bound).all()
    differ = (lab != ref).float().mean().item()
    assert differ < 0.02
    if precision == "bf16":
        assert differ > 0  # the bf16 path really rounds (the mixture has near ties)


def test_low_precision_centroids_within_tolerance_of_fp32() -> None:
    """Stated tolerances, from the same centroids. Separated clusters far from the origin: tf32/bf16
    find the same labels, so the same centroids (bit-equal). Overlapping mixture (many near ties): one
    Lloyd update moves the centroids on average by at most 5e-3 (tf32) / 3e-2 (bf16) of the data's RMS
    radius (cosine: of the unit sphere) away from the fp32 update (measured on 6 seeds: <= 1.6e-3 /
    2.0e-2 euclidean, 3.2e-3 / 1.4e-2 cosine). Several iterations are chaotic (one flipped point can
    send a centroid elsewhere), so longer runs are compared by inertia in the benchmark, not here."""
    x, y = blobs(n=1200, k=8, spread=0.5)
    x = x + 50.0
    start = x[[int(np.flatnonzero(y == j)[0]) for j in range(8)]]
    ref = kmeans(x, 8, init=start, iters=20, progress=False, matmul_precision="fp32")
    for precision in ("tf32", "bf16"):
        res = kmeans(x, 8, init=start, iters=20, progress=False, matmul_precision=precision)
        assert res.matmul_precision == precision and res.summary()["matmul_precision"] == precision
        assert torch.equal(res.centroids, ref.centroids)
    xm = torch.from_numpy(mixture(offset=30.0))
    c0 = xm[torch.randperm(len(xm), generator=torch.Generator().manual_seed(1))[:40]].clone()
    center = xm.mean(0)
    for metric in ("euclidean", "cosine"):
        xp, cp = km.prepare(xm, metric), km.prepare(c0, metric)
        radius = float((xp - center).norm(dim=1).pow(2).mean().sqrt()) if metric == "euclidean" else 1.0
        moved = {}
        for precision in ("fp32", "tf32", "bf16"):
            labels, _ = assign_chunked(xp, cp, metric, 500, prepared=True, precision=precision, center=center)
            moved[precision] = km.update_centroids(xp, labels, cp, metric)[0]
        for precision, tol in (("tf32", 5e-3), ("bf16", 3e-2)):
            dev = (moved[precision] - moved["fp32"]).norm(dim=1).mean() / radius
            assert dev <= tol, (metric, precision, float(dev))
        assert not torch.equal(moved["bf16"], moved["fp32"])  # the comparison is not vacuous


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("init_batch", [1, 4])
def test_seeding_deterministic_for_seed(precision: str, init_batch: int) -> None:
    x = torch.from_numpy(mixture(n=3000, k=30))
    draws = [km.kmeans_plusplus(x, 30, "euclidean", torch.Generator().manual_seed(s), batch=init_batch,
                                precision=precision) for s in (5, 5, 6)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    rows = {tuple(r) for r in draws[0].tolist()}
    assert len(rows) == 30 and rows <= {tuple(r) for r in x.tolist()}  # distinct data rows


def test_batched_seeding_covers_separated_clusters() -> None:
    """D^2 draws a few centres at a time still land in distinct blobs, like exact k-means++, and the
    default batch is exact up to INIT_ROUNDS centres."""
    x, y = blobs(n=2000, k=20, spread=0.2)
    for batch in (1, 4):
        seeds = km.kmeans_plusplus(torch.from_numpy(x), 20, "euclidean", torch.Generator().manual_seed(0), batch=batch)
        blob_of_seed = [y[np.flatnonzero((x == s.numpy()).all(1))[0]] for s in seeds]
        assert len(set(blob_of_seed)) >= (20 if batch == 1 else 18)
    assert km.init_batch_size(km.INIT_ROUNDS) == 1 and km.init_batch_size(10_000) == 20


@pytest.mark.parametrize("sums", ["sorted", "index_add"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_empty_cluster_reseeded_every_path(sums: str, precision: str) -> None:
    x, y = blobs(n=400, k=4)
    centres = np.stack([x[y == j].mean(0) for j in range(3)] + [np.full(x.shape[1], 1e4, dtype=np.float32)])
    res = kmeans(x, 4, init=centres, seed=0, progress=False, centroid_sums=sums, matmul_precision=precision)
    assert res.reseeded >= 1
    assert ari(assign(x, res.centroids.numpy(), "euclidean"), y) == pytest.approx(1.0)
    mb = kmeans(x, 4, init=centres, seed=0, batch_size=100, iters=40, progress=False, centroid_sums=sums,
                matmul_precision=precision)
    assert mb.reseeded >= 1 and torch.isfinite(mb.centroids).all()


def test_lloyd_syncs_once_per_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The convergence test reads one small tensor per iteration (plus one before the loop)."""
    calls = []
    real = torch.Tensor.tolist

    def spy(self):  # type: ignore[no-untyped-def]
        calls.append(tuple(self.shape))
        return real(self)

    monkeypatch.setattr(torch.Tensor, "tolist", spy)
    x = mixture(n=2000, k=20)
    res = kmeans(x, 20, seed=0, iters=7, tol=0.0, progress=False)
    assert len(calls) == res.n_iter + 1 and all(s in {(2,), (3,)} for s in calls)


def test_speed_benchmark_runs_on_cpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/kmeans_speed.py (not timed here) keeps running: every row measured, none failed."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kmeans_speed.py"
    spec = importlib.util.spec_from_file_location("kmeans_speed_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    monkeypatch.setattr("sys.argv", ["kmeans_speed.py", "--n", "3000", "--dim", "16", "--k", "24", "--iters", "2",
                                     "--precision", "fp32", "tf32", "bf16"])
    bench.main()
    out = capsys.readouterr().out
    assert "failed" not in out
    for row in ("| previous (one-hot sums, per-centre seeding) | fp32 |", "| current | bf16 |",
                "| distance matmuls only (limit) | tf32 |", "- bf16: mean shift"):
        assert row in out
