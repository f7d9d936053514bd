"""Training throughput of the unit LM (``speechunits.lm.model.UnitLM``) against PyTorch's own encoder stack.

Run from the repository root::

    .venv/bin/python benchmarks/lm_throughput.py            # d=512, 6 layers, T=512 (CPU: minutes)
    .venv/bin/python benchmarks/lm_throughput.py --quick    # d=128, 2 layers, T=128, < 1 min
    .venv/bin/python benchmarks/lm_throughput.py --device cuda   # CUDA only (fp32 and bf16 autocast)

One training step = forward, next-token cross entropy, backward, ``torch.optim.AdamW`` step.
Both models have the same size (vocabulary, width, depth, heads, feed-forward width, tied output
projection, dropout 0): ``UnitLM`` (pre-LN blocks, rotary positions, fused
``scaled_dot_product_attention(is_causal=True)``) and the baseline: ``torch.nn.TransformerEncoder``
of ``TransformerEncoderLayer(norm_first=True, activation="gelu", batch_first=True)`` with a causal
mask (``is_causal=True``), a learned absolute position table and a final LayerNorm. Same random
batch, same thread count, measured in the same run; timing is the median step time over
``--steps`` steps after 2 warm-up steps (``torch.cuda.synchronize`` around each step on CUDA).

tokens/s = batch * T / step time. Model FLOPs per token (PaLM convention, fwd + bwd) =
6 * (matmul parameters, incl. the output projection) + 12 * layers * T * d_model (attention scores
and values). MFU = achieved model FLOP/s / peak, with the peak *measured* on the same device in the
same dtype: the median FLOP/s of a square ``torch.mm`` (n = 2048; 1024 with --quick), which is
what the hardware's matrix unit can deliver to this process (the physical limit for this model).
Results are printed and written to ``benchmarks/results/lm_throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechunits.io_utils import atomic_write_text  # noqa: E402
from speechunits.lm.model import UnitLM, UnitLMConfig, next_token_logprobs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "lm_throughput.md"


class TorchEncoderLM(nn.Module):
    """The baseline: the same-size causal LM from ``torch.nn.TransformerEncoder``."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, norm=nn.LayerNorm(cfg.d_model),
                                             enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.embed(tokens) + self.pos(torch.arange(t, device=tokens.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        return nn.functional.linear(self.encoder(x, mask=mask, is_causal=True), self.embed.weight)


def model_flops_per_token(cfg: UnitLMConfig, seq_len: int) -> float:
    d, f, layers = cfg.d_model, cfg.d_ff, cfg.n_layers
    matmul_params = layers * (4 * d * d + 2 * d * f) + cfg.vocab_size * d  # qkv+proj, MLP, output projection
    return 6.0 * matmul_params + 12.0 * layers * seq_len * d


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Median FLOP/s of an n x n x n matrix product."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times)


def step_time(model: nn.Module, tokens: torch.Tensor, device: torch.device, bf16: bool, steps: int) -> float:
    """Median seconds of one fwd + loss + bwd + AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times = []
    for i in range(steps + 2):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs)
        loss = nn.functional.nll_loss(next_token_logprobs(logits).flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="all: CPU, and CUDA when present")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        dims = dict(vocab_size=502, d_model=128, n_layers=2, n_heads=4, d_ff=512, max_len=128)
        batch, steps, gemm_n = 8, args.steps or 3, 1024
    else:
        dims = dict(vocab_size=1002, d_model=512, n_layers=6, n_heads=8, d_ff=2048, max_len=512)
        batch, steps, gemm_n = 8, args.steps or 5, 2048
    cfg = UnitLMConfig(dropout=0.0, **dims)
    seq = cfg.max_len
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    flops_tok = model_flops_per_token(cfg, seq)
    rows = []
    for device in devices:
        modes = [False] + ([True] if device.type == "cuda" else [])
        for bf16 in modes:
            dtype = torch.bfloat16 if bf16 else torch.float32
            peak = gemm_peak(device, dtype, gemm_n)
            result = {}
            for name, cls in (("UnitLM", UnitLM), ("nn.TransformerEncoder", TorchEncoderLM)):
                torch.manual_seed(0)
                model = cls(cfg).to(device).train()
                tokens = torch.randint(0, cfg.vocab_size - 2, (batch, seq + 1), device=device)
                t = step_time(model, tokens, device, bf16, steps)
                result[name] = batch * seq / t
                params = sum(p.numel() for p in model.parameters())
                rows.append((device.type, "bf16" if bf16 else "fp32", name, params, t, result[name],
                             result[name] * flops_tok / peak, peak))
                del model
            rows[-2] += (result["UnitLM"] / result["nn.TransformerEncoder"],)
            rows[-1] += (1.0,)
            print(f"{device.type} {dtype}: UnitLM {result['UnitLM']:.0f} tok/s, "
                  f"baseline {result['nn.TransformerEncoder']:.0f} tok/s", file=sys.stderr)
    threads = torch.get_num_threads()
    lines = [
        "# Unit LM training throughput", "",
        f"`benchmarks/lm_throughput.py{' --quick' if args.quick else ''}`: one step = forward, next-token cross "
        "entropy, backward, AdamW. Model: " + ", ".join(f"{k}={v}" for k, v in dims.items()) +
        f", batch {batch} x {seq} tokens, dropout 0, tied output projection. Median of {steps} steps after 2 warm-up.",
        "",
        f"Host: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} CPU thread(s)"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "") + ". "
        f"Model FLOPs/token (6N + 12LTd): {flops_tok / 1e6:.1f} M. Peak = measured {gemm_n}^3 `torch.mm` of the same "
        "device and dtype.",
        "",
        "| device | dtype | model | params | s/step | tokens/s | MFU | peak GFLOP/s | vs baseline |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dev, dt, name, params, t, tps, mfu, peak, ratio in rows:
        lines.append(f"| {dev} | {dt} | {name} | {params / 1e6:.2f} M | {t:.4f} | {tps:,.0f} | {mfu:.1%} | "
                     f"{peak / 1e9:,.1f} | {ratio:.2f}x |")
    lines += ["", "On a shared machine the absolute numbers are noisy; compare the ratio column "
              "(both models measured in the same run, same batch, same threads).", ""]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
