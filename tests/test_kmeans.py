"""K-means, codebook files and embedding sampling (speechunits.quantize)."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch

from speechunits.errors import CheckpointError, ConfigError
import speechunits.quantize.kmeans as km
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
    real = km._block_dist

    def spy(xb, c, c_sq, metric):  # type: ignore[no-untyped-def]
        out = real(xb, c, c_sq, metric)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(km, "_block_dist", spy)
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
