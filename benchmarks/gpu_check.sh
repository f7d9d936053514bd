#!/usr/bin/env bash
# Issue 15's GPU checks as one prepared command for the device machine (one H200, Python 3.12,
# torch 2.11, numba, Triton; no network). Run from the repository root there:
#
#   bash benchmarks/gpu_check.sh            # results under $OUT (the device tool), else /tmp/gpu_check
#
# Before the call, here (see benchmarks/README.md, "gpu_tokenize.py"):
#   echo /.whl/ >> .git/info/exclude; echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 omegaconf==2.4.0
#   mkdir -p .gpu && cp ../shared/fixtures/greedy_segment_vectors.npz .gpu/
# and carry [".whl", ".gpu"]. Budget: about 8 minutes (timeout_s 560), each step bounded by its own
# timeout so a hang in one still returns the others' files:
#   1. the Triton segmentation kernels compiled for the GPU against the CPU greedy_segment: the
#      fixtures, and noisy d = 768 features at several thresholds, float64 and float32
#      accumulation, float32 and bf16 input (identical utterances, exact-edge boundary F1);
#   2. benchmarks/gpu_tokenize.py --device cuda (the issue's table, tokenize end to end);
#   3. benchmarks/kmeans_speed.py at 1 M x 768, k = 10,000 (fp32 / tf32 / bf16).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || {
  echo "gpu_check: could not install the carried wheels in .whl/ (see the header)" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD NUMBA_CACHE_DIR=/tmp/numba PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c 'import torch, triton, numba; print("torch", torch.__version__, "triton", triton.__version__, "numba", numba.__version__)'; nproc; } \
  > "$out/env.txt" 2>&1

echo "== 1. device segmentation kernels vs the CPU"
timeout 90 python3 - > "$out/device_segmentation.txt" 2>&1 <<'EOF'
import numpy as np, torch
from speechunits.sylber.segment_device import decision_agreement
z = np.load(".gpu/greedy_segment_vectors.npz")
names = sorted({k.rsplit("__", 1)[0] for k in z.files})
for acc in (torch.float64, torch.float32):
    same = 0
    for n in names:
        r = decision_agreement([z[n + "__x"]], float(z[n + "__norm_threshold"]), float(z[n + "__merge_threshold"]),
                               device="cuda", accumulate=acc)
        same += r["identical_fraction"] == 1.0
    print(f"fixtures, accumulate {acc}: {same}/{len(names)} identical to greedy_segment")
rng = np.random.default_rng(0)
utts = []
for i in range(256):  # syllable-like: piecewise-constant directions plus noise, silence gaps
    t, x = 0, []
    while t < 750:
        n = int(rng.integers(4, 16))
        c = rng.standard_normal(768).astype(np.float32) * (0.2 if rng.random() < 0.15 else 1.0)
        x.append(c + 0.6 * rng.standard_normal((n, 768)).astype(np.float32)); t += n
    utts.append(np.concatenate(x)[:750] / 10)
norms = np.linalg.norm(np.concatenate(utts), axis=1)
for nt in (float(np.percentile(norms, 20)), float(np.percentile(norms, 50))):
    for mt in (0.3, 0.6, 0.8):
        for acc in (torch.float64, torch.float32):
            for fd in (torch.float32, torch.bfloat16):
                r = decision_agreement(utts, nt, mt, device="cuda", accumulate=acc, feature_dtype=fd)
                print(f"256 x 750 x 768, norm {nt:.3f} merge {mt}, accumulate {acc}, features {fd}: "
                      f"{100 * r['identical_fraction']:.1f}% identical, boundary F1 {r['boundary_f1']:.5f}")
EOF
echo "exit $?" >> "$out/device_segmentation.txt"; cat "$out/device_segmentation.txt"

echo "== 2. gpu_tokenize.py"
timeout 280 python3 benchmarks/gpu_tokenize.py --device cuda --hours 5 --corpus /tmp/gt_corpus --out "$out/gpu_tokenize.md" \
  > "$out/gpu_tokenize.log" 2>&1
echo "exit $?" >> "$out/gpu_tokenize.log"; tail -40 "$out/gpu_tokenize.log"

echo "== 3. kmeans_speed.py"
timeout 150 python3 benchmarks/kmeans_speed.py --device cuda --n 1000000 --dim 768 --k 10000 --iters 10 --previous-iters 2 \
  --precision fp32 tf32 bf16 --out "$out/kmeans_speed_h200.md" > "$out/kmeans_speed.log" 2>&1
echo "exit $?" >> "$out/kmeans_speed.log"; tail -30 "$out/kmeans_speed.log"
