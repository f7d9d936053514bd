"""Benchmark: corpus tokenization on whatever device is present (issue 15's table, re-measured).

One script, one run, every row measured now on the same machine, model and audio:

* **Encoder ceiling**: the encoder forward alone on device-resident padded batches
  (``--ceiling-batch`` x ``--ceiling-seconds``), eager and under ``torch.compile``
  (:class:`speechunits.encoders.batch.PaddedForward`), bf16 autocast on CUDA.
* **BatchEncoder at frame budgets**: in-memory waveforms through the one batched inference path
  (features copied to the host, as ``Segmenter.encode_many`` does) at each ``--frame-budgets``
  value of ``max_batch_frames``: x real time and peak memory (device: ``max_memory_allocated``;
  CPU: the process's peak RSS so far, which only grows).
* **Data pipeline alone**: the corpus decoded, bucketed (``--max-padding`` 0.1), padded and
  pinned by :func:`speechunits.data.pipeline.build_audio_pipeline` with ``--num-workers``
  workers and no model: the ceiling that decoding puts on the end-to-end rows (the issue
  measured 16-thread FLAC decoding at 5,330x real time).
* **End to end**: ``speechunits tokenize`` as one in-process job
  (:func:`speechunits.tokenize.job.run_job`: data pipeline decoding FLAC with ``--num-workers``,
  ``--max-batch-frames`` budget, segmentation where ``--segment-on`` puts it, unit-set writer
  with float16 embeddings) over a generated LibriSpeech-shaped corpus (``--hours`` of FLAC,
  2-17 s utterances, tone-burst "syllables" over noise), eager and compiled.
* **Segmentation rate**: µs per frame of ``greedy_segment_batch`` over a padded batch of model
  features (numba threads = all cores), of the host path as tokenize runs it (copy to host +
  greedy + means), and of the device path when its kernels are available.
* **bf16 vs fp32**: ``Segmenter.segment_many`` with and without bf16 autocast on
  ``--agreement-utts`` utterances: identical utterances (%) and boundary F1 of bf16 against
  fp32 (:mod:`speechunits.eval.boundaries`, 50 ms tolerance). On the CPU autocast is off, so
  both runs are fp32.
* **Compute limit**: the model's FLOPs per second of audio, counted from its config (convs,
  projections, attention at the ceiling's length), and the x real time that ``--peak-tflops``
  (default on CUDA: the issue's 790 TFLOP/s bf16 of an H200) would allow; each throughput row
  is reported as a fraction of it. The issue's own assumption (11 GFLOP per second of audio)
  is printed beside the count.

The model is randomly initialised (seed 0) with randomised layer norms so frame norms and
directions vary; thresholds come from its features (30th percentile of frame norms, 10th
percentile of consecutive-frame cosines), about one segment per 10 frames.

Usage::

    python benchmarks/gpu_tokenize.py --quick                 # CPU smoke run, about a minute
    python benchmarks/gpu_tokenize.py --device cuda           # the GPU table (10 h corpus)

Writes the markdown table to ``benchmarks/results/gpu_tokenize.md`` (``--out``). Imports only
torch, numpy, numba, soundfile and the project (see benchmarks/README.md for the GPU machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SR = 16000
ISSUE_GFLOP_PER_SECOND = 11.0  # the issue's assumption for the HuBERT-base-sized 9-layer encoder
H200_BF16_TFLOPS = 790.0


@dataclass
class Row:
    what: str
    rate: float | None  # x real time (audio seconds per wall second), or None
    other: str = ""  # another measure (µs/frame, %, memory)
    note: str = ""


# ------------------------------------------------------------------ audio
def utterance_seconds(rng: np.random.Generator, total: float, quick: bool) -> list[float]:
    """LibriSpeech-shaped lengths (most 10-16 s, a tail down to 2 s) summing to about ``total`` seconds."""
    out: list[float] = []
    while sum(out) < total:
        out.append(float(np.clip(rng.normal(6.0 if quick else 12.5, 3.5), 2.0, 17.0)))
    return out


def synth_wave(seconds: float, seed: int) -> np.ndarray:
    """Tone bursts (3 harmonics of a random f0, 80-300 ms, Hann envelope) with short gaps, over noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))  # make_corpus passes whole samples / SR: round, or n / SR * SR can floor to n - 1
    wav = 0.003 * rng.standard_normal(n)
    pos = int(rng.uniform(0.05, 0.3) * SR)
    while pos < n:
        dur = min(int(rng.uniform(0.08, 0.3) * SR), n - pos)
        t = np.arange(dur) / SR
        f0 = rng.uniform(90, 260)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
        wav[pos: pos + dur] += rng.uniform(0.1, 0.4) * tone * np.hanning(dur)
        pos += dur + int(rng.uniform(0.0, 0.2) * SR)
    return wav.astype(np.float32)


def _write_one(job: tuple[str, float, int]) -> None:
    import soundfile as sf

    path, seconds, seed = job
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_wave(seconds, seed), SR, format="FLAC", subtype="PCM_16")


def make_corpus(root: Path, hours: float, quick: bool, workers: int) -> tuple[Path, float]:
    """FLAC files in a LibriSpeech layout (speaker/chapter/spk-chap-nnnn.flac) and a JSONL manifest.

    Reused when ``root`` already holds the manifest of the same size."""
    from multiprocessing import get_context

    from speechunits.data.jsonl import write_jsonl_manifest
    from speechunits.data.utterance import Utterance

    manifest = root / f"data_{hours:g}h.jsonl"
    lengths = utterance_seconds(np.random.default_rng(0), hours * 3600, quick)
    jobs, utts = [], []
    for i, sec in enumerate(lengths):
        spk, chap = 100 + i // 120, 1000 + i // 40
        uid = f"{spk}-{chap}-{i:06d}"
        path = root / str(spk) / str(chap) / f"{uid}.flac"
        n = int(sec * SR)
        jobs.append((str(path), n / SR, i))
        utts.append(Utterance(id=uid, audio=str(path), num_samples=n, sample_rate=SR))
    if not manifest.exists():
        with get_context("fork").Pool(workers) as pool:
            pool.map(_write_one, jobs, chunksize=4)
        write_jsonl_manifest(utts, manifest)
    return manifest, sum(int(s * SR) for s in lengths) / SR


# ------------------------------------------------------------------ model
def make_model(size: str) -> Any:
    from speechunits.encoders.model import EncoderConfig, SpeechEncoder

    torch.manual_seed(0)
    model = SpeechEncoder(EncoderConfig() if size == "base" else EncoderConfig.tiny())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                weight = name.endswith("weight")
                p.copy_(torch.randn_like(p) * (0.8 if weight else 0.5) + (1.0 if weight else 0.0))
    return model.eval()


def flops_per_second(model: Any, seconds: float) -> float:
    """Multiply-adds x 2 of one forward per second of audio, for utterances of ``seconds``."""
    c = model.config
    positions, flops, cin = float(SR), 0.0, 1
    for cout, kernel, stride in c.extractor_conv_layer_config:
        positions /= stride
        flops += 2 * cin * cout * kernel * positions
        cin = cout
    frames, d = positions, c.encoder_embed_dim
    flops += 2 * cin * d * frames  # feature projection
    flops += 2 * d * (d // c.pos_conv_groups) * c.pos_conv_kernel * frames
    t = frames * seconds  # frames per utterance: attention is quadratic in it
    per_layer = 2 * (4 * d * d + 2 * d * c.ffn_dim) * frames + 2 * 2 * t * d * frames
    return flops + c.num_layers * per_layer


# ------------------------------------------------------------------ measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB device"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process so far)"


def ceiling(model: Any, device: torch.device, batch: int, seconds: float, iters: int, compile: bool) -> Row:
    from speechunits.device import inference_context
    from speechunits.encoders.batch import PaddedForward

    forward = PaddedForward(model, None, compile)
    x = torch.randn(batch, int(seconds * SR), device=device) * 0.1
    lengths = torch.full((batch,), x.shape[1], device=device, dtype=torch.long)
    reset_peak(device)
    with inference_context(device, autocast=True):
        t0 = time.perf_counter()
        for _ in range(2):  # warm-up: compiles, and meets the shapes once more (lazy initialisation)
            forward(x, lengths)
        sync(device)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(iters):
            forward(x, lengths)
        sync(device)
        wall = time.perf_counter() - t0
    fell_back = compile and forward.compiled is None
    return Row(f"encoder forward alone, device-resident {batch} x {seconds:g} s, "
               f"{'torch.compile' + (' (FAILED: eager)' if fell_back else '') if compile else 'eager'}",
               batch * seconds * iters / wall, peak_memory(device), f"two warm-up calls {warm:.1f} s")


def budget_rows(model: Any, device: torch.device, waves: list[np.ndarray], budgets: list[int]) -> list[Row]:
    from speechunits.encoders.batch import BatchEncoder

    rows, audio = [], sum(len(w) for w in waves) / SR
    for frames in budgets:
        encoder = BatchEncoder(model, batch_seconds=1e9, max_batch_frames=frames, device=device)
        for _ in range(2):  # the second pass is timed: the first meets each batch shape for the first time
            reset_peak(device)
            t0 = time.perf_counter()
            n = sum(len(b.encoded) for b in encoder.encode_waveforms(waves))
            sync(device)
            wall = time.perf_counter() - t0
        rows.append(Row(f"BatchEncoder, host features (encode_many), max_batch_frames {frames}", audio / wall,
                        peak_memory(device), f"{n} utterances, {audio:.0f} s; second pass"))
    return rows


def segmentation_rows(model: Any, device: torch.device, waves: list[np.ndarray], thresholds: tuple[float, float],
                      max_batch_frames: int) -> list[Row]:
    import numba

    from speechunits.encoders.batch import BatchEncoder
    from speechunits.sylber.segment import greedy_segment_batch
    from speechunits.sylber.segment_batch import device_segmentation_ready, start_segmentation

    nt, mt = thresholds
    encoder = BatchEncoder(model, batch_seconds=1e9, max_batch_frames=max_batch_frames, device=device,
                           keep_on_device=True)
    batches = (b.device for b in encoder.encode_waveforms(waves) if b.device is not None)
    batch = max(batches, key=lambda d: sum(d.num_frames))  # the fullest batch (the first ones hold the shortest)
    frames = sum(batch.num_frames)
    host = batch.features.float().cpu().numpy()
    lengths = np.asarray(batch.num_frames)
    greedy_segment_batch(host[:1, :50], lengths[:1].clip(max=50), nt, mt)  # JIT warm-up
    rows = []
    walls = []
    for _ in range(3):  # median of 3: one small batch is quick, and the machine may be shared
        t0 = time.perf_counter()
        segs = greedy_segment_batch(host, lengths, nt, mt)
        walls.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    per_sec = sum(len(s) for s in segs) / (frames / model.frame_rate)
    rows.append(Row(f"greedy_segment_batch, padded {host.shape[0]} x {host.shape[1]} x {host.shape[2]} "
                    f"({numba.get_num_threads()} numba threads)", None, f"{wall / frames * 1e6:.2f} µs/frame",
                    f"median of 3; {per_sec:.1f} segments per second of audio"))
    start_segmentation(batch, "host", norm_threshold=nt, merge_threshold=mt).result()  # means JIT warm-up
    wheres = ["host"] + (["device"] if device_segmentation_ready(device) else [])
    results = {}
    for where in wheres:
        walls = []
        for _ in range(3):
            sync(device)
            t0 = time.perf_counter()
            results[where] = start_segmentation(batch, where, norm_threshold=nt, merge_threshold=mt).result()[0]
            walls.append(time.perf_counter() - t0)
        wall = float(np.median(walls))
        note = "median of 3, from device features to host results"
        if where == "device":  # the device kernels' decisions against the host's on the same features
            host_rows = {r.id: r for r in results["host"]}
            same = sum(np.array_equal(r.segments, host_rows[r.id].segments) for r in results["device"])
            diffs = [float(np.abs(np.asarray(r.embeddings, np.float32) - host_rows[r.id].embeddings).max())
                     for r in results["device"] if r.embeddings is not None and len(r.embeddings)
                     and np.array_equal(r.segments, host_rows[r.id].segments)]
            note += (f"; {same}/{len(results['device'])} utterances with the host's segments, "
                     f"max |mean difference| {max(diffs, default=0.0):.2e} (float16 means)")
        rows.append(Row(f"segmentation + means of that batch, {where} path (as tokenize runs it)", None,
                        f"{wall / frames * 1e6:.2f} µs/frame", note))
    if "device" not in wheres:
        rows.append(Row("segmentation + means, device path", None, "n/a",
                        f"speechunits.sylber.segment_device not available on {device}"))
    return rows


def decode_row(manifest: Path, device: torch.device, args: argparse.Namespace) -> Row:
    """The data pipeline alone over the corpus (decode, resample check, bucket, pad, pin), as tokenize
    feeds its encoder: the ceiling that decoding puts on the end-to-end rows."""
    from speechunits.data.jsonl import load_manifest
    from speechunits.data.pipeline import build_audio_pipeline

    utts = load_manifest(manifest, require_text=False)
    budget = args.max_batch_frames * 320 / SR
    pipe = build_audio_pipeline(utts, sample_rate=SR, max_batch_seconds=budget, num_parallel_calls=args.num_workers,
                                prefetch=args.prefetch, pin_memory=device.type == "cuda", max_padding=0.1)
    try:
        t0 = time.perf_counter()
        samples = sum(int(b.lengths.sum()) for b in pipe)
        wall = time.perf_counter() - t0
    finally:
        pipe.close()
    return Row(f"data pipeline alone ({pipe.backend} backend, {args.num_workers} decode workers)",
               samples / SR / wall, "", f"{len(utts)} FLAC files, {wall:.1f} s wall, no model")


def end_to_end(model: Any, device: torch.device, manifest: Path, audio: float, thresholds: tuple[float, float],
               args: argparse.Namespace, compile: bool) -> Row:
    from speechunits.data.jsonl import load_manifest
    from speechunits.encoders.checkpoints import save_encoder
    from speechunits.sylber.segment_batch import resolve_segment_on
    from speechunits.tokenize.job import TokenizeSettings, run_job

    with tempfile.TemporaryDirectory(prefix="gpu_tokenize_") as tmp:
        ckpt = Path(tmp) / "model.pt"
        save_encoder(ckpt, model)
        utts = load_manifest(manifest, require_text=False)

        def make_settings(out: str) -> TokenizeSettings:
            return TokenizeSettings(model=ckpt, data=manifest, out=Path(tmp) / out,
                                    norm_threshold=thresholds[0], merge_threshold=thresholds[1],
                                    batch_seconds=1e6, max_batch_frames=args.max_batch_frames,
                                    num_workers=args.num_workers, prefetch=args.prefetch, compile=compile,
                                    segment_on=args.segment_on, device=str(device))

        # warm-up on a few utterances (numba and kernel compilation, the compiled graph), not timed
        run_job(make_settings("warm-up"), 0, model=model, utts=utts[:8], model_hash="benchmark", progress=False)
        settings = make_settings("units")
        reset_peak(device)
        t0 = time.perf_counter()
        report = run_job(settings, 0, model=model, utts=utts, model_hash="benchmark", progress=False)
        sync(device)
        wall = time.perf_counter() - t0
    where = resolve_segment_on(args.segment_on, device)
    return Row(f"`speechunits tokenize` end to end, {'compiled' if compile else 'eager'}, segmentation on {where}",
               audio / wall, peak_memory(device),
               f"{report.utterances} utterances written, {report.bad} bad, {audio / 3600:.2f} h, {wall:.1f} s wall")


def agreement(model: Any, device: torch.device, waves: list[np.ndarray], thresholds: tuple[float, float]) -> Row:
    from speechunits.eval.boundaries import evaluate_boundaries, segment_boundaries
    from speechunits.sylber.segmenter import Segmenter

    results = {}
    for bf16 in (True, False):
        seg = Segmenter(model, device=device, norm_threshold=thresholds[0], merge_threshold=thresholds[1],
                        autocast=bf16)
        results[bf16] = seg.segment_many(waves, batch_seconds=300.0, hidden_states=False)
    same = sum(np.array_equal(a.segments_frames, b.segments_frames) for a, b in zip(results[True], results[False]))
    rate = model.frame_rate
    pred = {str(i): segment_boundaries(r.segments_frames, rate) for i, r in enumerate(results[True])}
    ref = {str(i): segment_boundaries(r.segments_frames, rate) for i, r in enumerate(results[False])}
    f1 = evaluate_boundaries(pred, ref).f1
    note = "bf16 autocast vs fp32" if device.type == "cuda" else "CPU: autocast is CUDA-only, both runs are fp32"
    return Row(f"bf16 vs fp32 segmentations, {len(waves)} utterances", None,
               f"{100 * same / len(waves):.1f}% identical, boundary F1 {f1:.4f}", note)


# ------------------------------------------------------------------ main
def thresholds_of(model: Any, device: torch.device, waves: list[np.ndarray]) -> tuple[float, float]:
    from speechunits.sylber.segmenter import Segmenter

    h = Segmenter(model, device=device, norm_threshold=0.0, merge_threshold=0.0).encode(waves[:4])
    h = np.concatenate([x for x in h if len(x) > 1])
    norms = np.linalg.norm(h, axis=1)
    unit = h / np.maximum(norms[:, None], 1e-8)
    cos = np.sum(unit[1:] * unit[:-1], axis=1)
    return float(np.percentile(norms, 30)), float(np.percentile(cos, 10))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--quick", action="store_true", help="tiny model, little audio: a CPU smoke run of about a minute")
    p.add_argument("--model", choices=["base", "tiny"], default=None, help="default: base (tiny with --quick)")
    p.add_argument("--hours", type=float, default=None, help="generated corpus size (default 10; 0.05 with --quick)")
    p.add_argument("--corpus", type=Path, default=None, help="folder for the generated FLAC corpus (reused; default a temp dir)")
    p.add_argument("--ceiling-batch", type=int, default=None, help="default 64 (4 with --quick)")
    p.add_argument("--ceiling-seconds", type=float, default=None, help="default 15 (4 with --quick)")
    p.add_argument("--ceiling-iters", type=int, default=None, help="default 10 (2 with --quick)")
    p.add_argument("--max-batch-frames", type=int, default=None, help="tokenize budget (default 48000; 2000 with --quick)")
    p.add_argument("--frame-budgets", default=None, help="comma list for the BatchEncoder rows "
                                                         "(default 10000,40000,160000; 500,2000 with --quick)")
    p.add_argument("--budget-minutes", type=float, default=None, help="audio for those rows (default 60; 1 with --quick)")
    p.add_argument("--agreement-utts", type=int, default=None, help="default 200 (8 with --quick)")
    p.add_argument("--segment-on", default="auto", choices=["auto", "host", "device"])
    p.add_argument("--num-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--prefetch", type=int, default=4)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak for the compute-limit column (default 790 on CUDA, the H200's bf16; none on CPU)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_tokenize.md")
    args = p.parse_args(argv)
    q = args.quick
    defaults = dict(model="tiny" if q else "base", hours=0.05 if q else 10.0, ceiling_batch=4 if q else 64,
                    ceiling_seconds=4.0 if q else 15.0, ceiling_iters=2 if q else 10,
                    max_batch_frames=2000 if q else 48000, frame_budgets="500,2000" if q else "10000,40000,160000",
                    budget_minutes=1.0 if q else 60.0, agreement_utts=8 if q else 200)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    from speechunits.device import resolve_device

    args = parse_args(argv)
    device = resolve_device(args.device)
    model = make_model(args.model).to(device)
    began = time.perf_counter()
    tmp = None
    if args.corpus is None:
        tmp = tempfile.TemporaryDirectory(prefix="gpu_tokenize_corpus_")
        args.corpus = Path(tmp.name)
    args.corpus.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest, audio = make_corpus(args.corpus, args.hours, args.quick, args.num_workers)
    made = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    budget_waves, total = [], 0.0
    while total < args.budget_minutes * 60:
        sec = float(np.clip(rng.normal(6.0 if args.quick else 12.5, 3.5), 2.0, 17.0))
        budget_waves.append(synth_wave(sec, 10**6 + len(budget_waves)))
        total += sec
    thresholds = thresholds_of(model, device, budget_waves)
    print(f"device {device}, model {args.model}, thresholds norm {thresholds[0]:.3f} merge {thresholds[1]:.3f}, "
          f"corpus {audio / 3600:.2f} h ({made:.0f} s to make)", file=sys.stderr, flush=True)

    rows: list[Row] = []
    compiles = [False] if args.no_compile else [False, True]

    def add(new: Row | list[Row]) -> None:
        for r in new if isinstance(new, list) else [new]:
            rows.append(r)
            rate = f"{r.rate:,.0f}x" if r.rate is not None else ""
            print(f"  {r.what}: {rate} {r.other} {r.note}", file=sys.stderr, flush=True)

    for c in compiles:
        add(ceiling(model, device, args.ceiling_batch, args.ceiling_seconds, args.ceiling_iters, c))
    add(budget_rows(model, device, budget_waves, [int(v) for v in args.frame_budgets.split(",")]))
    try:
        add(decode_row(manifest, device, args))
    except Exception as err:  # noqa: BLE001 - reported as a row; the others still run
        add(Row("data pipeline alone", None, "n/a", f"failed: {type(err).__name__}: {err}"))
    for c in compiles:
        try:
            add(end_to_end(model, device, manifest, audio, thresholds, args, c))
        except Exception as err:  # noqa: BLE001 - e.g. no data-pipeline backend on this machine: the other rows still run
            import traceback

            traceback.print_exc()
            add(Row("`speechunits tokenize` end to end", None, "n/a", f"failed: {type(err).__name__}: {err}"))
    add(segmentation_rows(model, device, budget_waves, thresholds, args.max_batch_frames))
    add(agreement(model, device, budget_waves[: args.agreement_utts], thresholds))

    flops = flops_per_second(model, args.ceiling_seconds)
    peak = args.peak_tflops if args.peak_tflops is not None else (H200_BF16_TFLOPS if device.type == "cuda" else None)
    limit = peak * 1e12 / flops if peak else None
    lines = write_table(args, device, model, rows, flops, peak, limit, audio, thresholds, time.perf_counter() - began)
    print("\n".join(lines))
    if tmp is not None:
        tmp.cleanup()
    return 0


def write_table(args: argparse.Namespace, device: torch.device, model: Any, rows: list[Row], flops: float,
                peak: float | None, limit: float | None, audio: float, thresholds: tuple[float, float],
                wall: float) -> list[str]:
    import numba

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    params = sum(p.numel() for p in model.parameters()) / 1e6
    cmd = "python benchmarks/gpu_tokenize.py " + " ".join(sys.argv[1:])
    lines = [
        "# `benchmarks/gpu_tokenize.py`: corpus tokenization throughput",
        "",
        f"Command: `{cmd.strip()}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {wall:.0f} s in all.",
        f"Device: {gpu or 'CPU'} ({device}); torch {torch.__version__}, numba {numba.__version__} "
        f"({numba.get_num_threads()} threads), {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at the "
        f"end), Python {platform.python_version()}.",
        f"Model: randomly initialised `{args.model}` encoder ({model.config.num_layers} layers, d = "
        f"{model.embed_dim}, {params:.1f} M parameters), bf16 autocast on CUDA; thresholds norm {thresholds[0]:.3f}, "
        f"merge {thresholds[1]:.3f} (from its features). Corpus: {audio / 3600:.2f} h of generated FLAC "
        f"(LibriSpeech-shaped lengths); tokenize with `--max-batch-frames {args.max_batch_frames}`, "
        f"`--num-workers {args.num_workers}`, `--prefetch {args.prefetch}`, `--segment-on {args.segment_on}`.",
        f"Compute: {flops / 1e9:.2f} GFLOP per second of audio counted from the config at {args.ceiling_seconds:g} s "
        f"utterances (the issue assumes {ISSUE_GFLOP_PER_SECOND:g} for the base model)"
        + (f"; at {peak:g} TFLOP/s the limit is {limit:,.0f}x real time." if limit else
           "; no peak FLOP/s assumed on the CPU (give --peak-tflops), so no limit column."),
        "",
        "| measured | x real time | | % of compute limit | notes |",
        "|---|---:|---|---:|---|",
    ]
    for r in rows:
        rate = f"{r.rate:,.0f}" if r.rate is not None else ""
        share = f"{100 * r.rate / limit:.1f}" if (limit and r.rate is not None) else ""
        lines.append(f"| {r.what} | {rate} | {r.other} | {share} | {r.note} |")
    if device.type != "cuda":
        lines += ["", "This run had no GPU: the GPU table awaits a run on one (benchmarks/README.md gives the "
                      "command). CPU numbers with `--quick` use the tiny model and are a smoke test, not a "
                      "measurement of the GPU path; on a shared machine (load average above the core count) "
                      "they swing by several times between runs."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


if __name__ == "__main__":
    sys.exit(main())
