"""Device (Triton) greedy segmentation: the same decisions as the numba kernel.

There is no GPU in CI, so the kernels run under the Triton interpreter. The interpreter patches
``triton.language`` for the whole process, so it runs in one subprocess: this file executed as
a script (``--worker``) with ``TRITON_INTERPRET=1``, which writes the device outputs of every
case to an npz. The tests here rebuild the same cases and compare with the CPU functions. The
interpreter is slow (a few ms per frame), so most fixtures are cut to their first frames
(compared with ``greedy_segment`` on the same cut) and a few run at full size.

A separate test compiles both kernels to sm_90 cubins (no GPU needed): the interpreter does not
check what the Triton compiler checks (types of loop-carried values, constexpr use).
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

import speechunits  # noqa: E402
from speechunits.sylber.segment import greedy_segment, segment_means  # noqa: E402
from speechunits.sylber.segment_device import (  # noqa: E402
    device_segmentation_available,
    greedy_segment_device,
    segment_means_device,
)

FIXTURE = Path(__file__).parent / "data" / "greedy_segment_vectors.npz"
FULL_SIZE = ("00_syll_d64_T50", "01_syll_d64_T200", "12_all_silent_d64_T100", "13_one_frame_d64", "14_syll_d768_T500")
CUT = 120
"""Frames kept of the other fixtures (the interpreter runs a few ms per frame)."""
PAD = 100.0
"""Loud padding value: read by mistake, it would be speech."""


# ------------------------------------------------------------------------------------------
# cases: built identically in the worker and in the tests
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _vectors() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE))


def _fixture(name: str) -> tuple[np.ndarray, float, float, np.ndarray]:
    v = _vectors()
    return (v[f"{name}__x"], float(v[f"{name}__norm_threshold"]), float(v[f"{name}__merge_threshold"]),
            v[f"{name}__segments"])


def _names() -> list[str]:
    return sorted({k.split("__")[0] for k in _vectors()})


def _pad(utts: list[np.ndarray], d: int) -> tuple[np.ndarray, np.ndarray]:
    t = max([len(u) for u in utts] + [1])
    x = np.full((len(utts), t, d), PAD, np.float32)
    for i, u in enumerate(utts):
        x[i, : len(u)] = u
    return x, np.array([len(u) for u in utts], np.int64)


def _palette_utterance(rng: np.random.Generator, d: int, t: int) -> np.ndarray:
    """Runs of exact repeats, silence, scaled/noisy copies, glides and noise (ties happen)."""
    pal = rng.integers(-3, 4, size=(int(rng.integers(1, 5)), d)).astype(np.float32)
    rows: list[np.ndarray] = []
    while len(rows) < t:
        kind = rng.choice(["pal", "pal", "sil", "rand", "scaled", "drift"])
        idx, run = int(rng.integers(len(pal))), int(rng.integers(1, 9))
        for r in range(run if kind != "rand" else 1):
            if kind == "sil":
                rows.append(np.zeros(d, np.float32))
            elif kind == "pal":
                rows.append(pal[idx])
            elif kind == "drift":
                a = r / run
                rows.append(((1 - a) * pal[idx] + a * pal[(idx + 1) % len(pal)]).astype(np.float32))
            elif kind == "scaled":
                rows.append(pal[idx] * np.float32(rng.uniform(0.5, 3)) + rng.normal(0, 0.2, d).astype(np.float32))
            else:
                rows.append(rng.normal(0, 2, d).astype(np.float32))
    return np.array(rows[:t], np.float32).reshape(t, d)


def _edge_utterances(d: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    e0, e1 = np.eye(d, dtype=np.float32)[:2] * 2
    alternating = np.concatenate([np.tile(e0, (6, 1)), np.tile(e1, (5, 1)), np.tile(e0, (7, 1))])
    return [
        np.zeros((0, d), np.float32),                                  # length 0
        rng.normal(0, 2, (1, d)).astype(np.float32),                   # length 1
        np.zeros((30, d), np.float32),                                 # no speech (unless nt = 0)
        np.tile(np.float32([1, 2, 0, -1, 3][:d]), (25, 1)),            # all speech, one segment
        alternating,                                                   # all speech, several segments
        np.concatenate([np.zeros((4, d), np.float32), alternating[:9], np.zeros((3, d), np.float32)]),
    ]


def cases() -> list[dict[str, Any]]:
    """Inputs of every device run: name, padded feats, lengths, thresholds and options."""
    out: list[dict[str, Any]] = []
    for name in FULL_SIZE:
        x, nt, mt, _ = _fixture(name)
        out.append(dict(name=f"full_{name}", x=x[None], lengths=np.array([len(x)]), nt=nt, mt=mt))
    groups: dict[tuple[float, float], list[np.ndarray]] = {}
    for i, name in enumerate(n for n in _names() if n not in FULL_SIZE):
        x, nt, mt, _ = _fixture(name)
        groups.setdefault((nt, mt), []).append(x[: CUT - 7 * (i % 3)])  # different lengths in a batch
    for j, ((nt, mt), utts) in enumerate(sorted(groups.items())):
        x, lens = _pad(utts, utts[0].shape[1])
        out.append(dict(name=f"cut_{j}", x=x, lengths=lens, nt=nt, mt=mt, means=True))
    x, nt, mt, _ = _fixture("03_syll_d64_T1000")
    x7, nt7, mt7, _ = _fixture("07_syll_d64_T1000_nt4")
    out.append(dict(name="reset_07", x=x7[None, :100], lengths=np.array([100]), nt=nt7, mt=mt7, reset=True))
    out.append(dict(name="bf16_03", x=x[None, :CUT], lengths=np.array([CUT]), nt=nt, mt=mt, bf16=True, means=True))
    out.append(dict(name="fp32acc_03", x=x[None, :CUT], lengths=np.array([CUT]), nt=nt, mt=mt, acc32=True))
    edge, lens = _pad(_edge_utterances(), 5)
    out.append(dict(name="edge", x=edge, lengths=lens, nt=0.5, mt=0.8, means=True))
    out.append(dict(name="edge_nt0", x=edge, lengths=lens, nt=0.0, mt=0.8))
    rng = np.random.default_rng(0)
    for d, (nt, mt) in [(1, (0.0, 0.5)), (3, (0.5, 0.95)), (11, (0.0, -0.3)), (3, (0.5, 1.0))]:
        utts = [_palette_utterance(rng, d, int(rng.integers(1, 45))) for _ in range(8)]
        x, lens = _pad(utts, d)
        out.append(dict(name=f"palette_d{d}_mt{mt}", x=x, lengths=lens, nt=nt, mt=mt))
    rng = np.random.default_rng(7)  # a seed where reset_count changes 3 of the 8 CPU results
    x, lens = _pad([_palette_utterance(rng, 3, int(rng.integers(20, 45))) for _ in range(8)], 3)
    out.append(dict(name="palette_d3_reset", x=x, lengths=lens, nt=0.5, mt=0.5, reset=True))
    return out


# ------------------------------------------------------------------------------------------
# the worker (runs under the interpreter)
# ------------------------------------------------------------------------------------------


def _feats(case: dict[str, Any]) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(case["x"]))
    return x.to(torch.bfloat16) if case.get("bf16") else x


def worker(path: str) -> None:
    """Run every case on the device functions; save segments, counts, means and error texts."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    res: dict[str, np.ndarray] = {}
    for c in cases():
        t0 = time.perf_counter()
        feats, lens = _feats(c), torch.from_numpy(c["lengths"])
        acc = torch.float32 if c.get("acc32") else torch.float64
        seg, cnt = greedy_segment_device(feats, lens, c["nt"], c["mt"], reset_count=c.get("reset", False),
                                         accumulate=acc)
        res[f"{c['name']}__seg"], res[f"{c['name']}__cnt"] = seg.numpy(), cnt.numpy()
        if c.get("means"):
            res[f"{c['name']}__means32"] = segment_means_device(feats, seg, cnt, dtype=torch.float32).numpy()
            res[f"{c['name']}__means16"] = segment_means_device(feats, seg, cnt).numpy()
        print(f"{c['name']}: {tuple(c['x'].shape)} {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    x = torch.ones((2, 6, 4))
    errors = []
    for call in (
        lambda: greedy_segment_device(x, torch.tensor([3, 7]), 0.5, 0.8),
        lambda: greedy_segment_device(x, torch.tensor([-1, 2]), 0.5, 0.8),
        lambda: segment_means_device(x, torch.tensor([[[0, 3]] * 6, [[2, 2]] * 6], dtype=torch.int32),
                                     torch.tensor([1, 1], dtype=torch.int32)),
        lambda: segment_means_device(x, torch.zeros((2, 6, 2), dtype=torch.int32), torch.tensor([7, 0])),
    ):
        try:
            call()
            errors.append("no error")
        except ValueError as e:
            errors.append(f"ValueError: {e}")
    res["errors"] = np.array(errors)
    np.savez(path, **res)


# ------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def device_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("segment_device") / "out.npz"
    root = str(Path(speechunits.__file__).resolve().parents[1])
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, "--worker", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"interpreter worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return dict(np.load(out))


def _expected(case: dict[str, Any]) -> list[np.ndarray]:
    x = _feats(case).float().numpy()
    return [greedy_segment(x[b, :n], case["nt"], case["mt"], reset_count=case.get("reset", False))
            for b, n in enumerate(case["lengths"])]


CASES = {c["name"]: c for c in cases()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_segments_as_cpu(device_out: dict[str, np.ndarray], name: str) -> None:
    case = CASES[name]
    seg, cnt = device_out[f"{name}__seg"], device_out[f"{name}__cnt"]
    b, t = case["x"].shape[:2]
    assert seg.shape == (b, t, 2) and seg.dtype == np.int32 and cnt.shape == (b,) and cnt.dtype == np.int32
    for i, exp in enumerate(_expected(case)):
        got = seg[i, : cnt[i]].astype(np.int64)
        np.testing.assert_array_equal(got, exp, err_msg=f"{name}: utterance {i}")
        assert not seg[i, cnt[i]:].any(), "rows after the count must stay 0"


def test_full_size_fixtures_match_stored_segments(device_out: dict[str, np.ndarray]) -> None:
    for name in FULL_SIZE:
        _, _, _, expected = _fixture(name)
        seg, cnt = device_out[f"full_{name}__seg"], device_out[f"full_{name}__cnt"]
        np.testing.assert_array_equal(seg[0, : cnt[0]].astype(np.int64).reshape(-1, 2), expected.reshape(-1, 2))


def test_every_fixture_is_covered() -> None:
    cut = [n for n in _names() if n not in FULL_SIZE]
    assert len(cut) + len(FULL_SIZE) == len(_names()) == 15
    batched = sum(c["x"].shape[0] for n, c in CASES.items() if n.startswith("cut_"))
    assert batched == len(cut)
    assert any(len(set(c["lengths"].tolist())) > 1 for n, c in CASES.items() if n.startswith("cut_"))


def test_cases_exercise_what_they_claim() -> None:
    """Guards against vacuous cases: reset_count changes the CPU result; edges give empty/one segment."""
    for name in ("reset_07", "palette_d3_reset"):
        c = CASES[name]
        differ = [not np.array_equal(greedy_segment(x[:n], c["nt"], c["mt"]),
                                     greedy_segment(x[:n], c["nt"], c["mt"], reset_count=True))
                  for x, n in zip(c["x"], c["lengths"])]
        assert any(differ), name
    edge = _expected(CASES["edge"])
    assert [len(s) for s in edge[:4]] == [0, 1, 0, 1] and len(edge[4]) > 1
    assert len(_expected(CASES["edge_nt0"])[2]) > 0  # with nt = 0 silence is speech
    mid_speech = sum(int((s[1:, 0] == s[:-1, 1]).sum()) for c in CASES.values() for s in _expected(c))
    assert mid_speech > 100  # many boundaries go through merge/refine


def test_segment_means_equal_cpu(device_out: dict[str, np.ndarray]) -> None:
    for name, case in CASES.items():
        if not case.get("means"):
            continue
        x = _feats(case).float().numpy()
        exp = [segment_means(x[b, :n], s) for b, (n, s) in enumerate(zip(case["lengths"], _expected(case))) if len(s)]
        exp32 = np.concatenate(exp) if exp else np.zeros((0, x.shape[2]), np.float32)
        got32, got16 = device_out[f"{name}__means32"], device_out[f"{name}__means16"]
        assert got32.dtype == np.float32 and got16.dtype == np.float16 and got32.shape == exp32.shape
        np.testing.assert_allclose(got32, exp32, rtol=1e-6, atol=1e-6)  # float64 sums in time order: equal
        np.testing.assert_array_equal(got16, got32.astype(np.float16))


def test_invalid_values_raise_under_the_interpreter(device_out: dict[str, np.ndarray]) -> None:
    errors = [str(e) for e in device_out["errors"]]
    assert "frame_lengths: values must lie in [0, 6]" in errors[0]
    assert "frame_lengths" in errors[1]
    assert "segments: 1 of the counted rows are empty" in errors[2]
    assert "counts: values must lie in [0, 6]" in errors[3]


@pytest.mark.parametrize(
    "args, exc, text",
    [
        ((np.zeros((1, 4, 3), np.float32), torch.tensor([4]), 0.5, 0.8), TypeError, "torch.Tensor"),
        ((torch.zeros(4, 3), torch.tensor([4]), 0.5, 0.8), ValueError, "(B, T, D)"),
        ((torch.zeros(1, 4, 3, dtype=torch.int32), torch.tensor([4]), 0.5, 0.8), TypeError, "float32"),
        ((torch.zeros(1, 4, 0), torch.tensor([4]), 0.5, 0.8), ValueError, "feature dimension is 0"),
        ((torch.zeros(2, 4, 3), torch.tensor([4]), 0.5, 0.8), ValueError, "frame_lengths: expected shape (2,)"),
        ((torch.zeros(1, 4, 3), torch.tensor([4.0]), 0.5, 0.8), TypeError, "int32/int64"),
        ((torch.zeros(1, 4, 3), torch.tensor([4]), -1.0, 0.8), ValueError, "norm_threshold"),
        ((torch.zeros(1, 4, 3), torch.tensor([4]), 0.5, 1.5), ValueError, "merge_threshold"),
    ],
)
def test_bad_inputs_raise_clearly(args: tuple, exc: type, text: str) -> None:
    with pytest.raises(exc, match=None) as info:
        greedy_segment_device(*args)
    assert text in str(info.value)


def test_bad_accumulate_and_means_shapes() -> None:
    x = torch.zeros(1, 4, 3)
    with pytest.raises(ValueError, match="accumulate"):
        greedy_segment_device(x, torch.tensor([4]), 0.5, 0.8, accumulate=torch.float16)
    with pytest.raises(ValueError, match=r"segments: expected shape \(1, 4, 2\)"):
        segment_means_device(x, torch.zeros((1, 3, 2), dtype=torch.int32), torch.zeros(1, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"counts: expected shape \(1,\)"):
        segment_means_device(x, torch.zeros((1, 4, 2), dtype=torch.int32), torch.zeros(2, dtype=torch.int32))


def test_availability_follows_the_interpreter_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not device_segmentation_available(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="needs CUDA with Triton"):
        greedy_segment_device(torch.zeros(1, 4, 3), torch.tensor([4]), 0.5, 0.8)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert device_segmentation_available(torch.device("cpu"))


@pytest.mark.ptxas
def test_kernels_compile_for_sm90(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Triton compiler accepts both kernels (float64 and float32, D = 64 and 768) without a GPU."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from speechunits.sylber import segment_device as sd

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    target = GPUTarget("cuda", 90, 32)
    greedy_sig = {"x_ptr": "*bf16", "len_ptr": "*i64", "out_ptr": "*i32", "count_ptr": "*i32", "T": "i32", "D": "i32",
                  "stride_b": "i32", "stride_t": "i32", "nt": "fp64", "mt": "fp64", "RESET": "constexpr",
                  "BLOCK_D": "constexpr", "ACC": "constexpr"}
    for acc, block_d, reset in ((tl.float64, 1024, False), (tl.float32, 64, True)):
        src = ASTSource(triton.jit(sd._greedy_kernel), greedy_sig,
                        constexprs={"RESET": reset, "BLOCK_D": block_d, "ACC": acc})
        compiled = triton.compile(src, target=target, options={"num_warps": max(1, block_d // 256)})
        assert "cubin" in compiled.asm and "ld.global" in compiled.asm["ptx"]
    means_sig = {"x_ptr": "*fp32", "utt_ptr": "*i64", "start_ptr": "*i64", "end_ptr": "*i64", "out_ptr": "*fp16",
                 "D": "i32", "stride_b": "i32", "stride_t": "i32", "BLOCK_D": "constexpr", "ACC": "constexpr"}
    src = ASTSource(triton.jit(sd._means_kernel), means_sig, constexprs={"BLOCK_D": 256, "ACC": tl.float64})
    assert "cubin" in triton.compile(src, target=target, options={"num_warps": 2}).asm


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(sys.argv[2])
