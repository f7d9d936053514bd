"""Benchmark: ``speechunits tokenize`` (one job) vs a straightforward per-utterance loop, on the CPU.

Both variants use the same randomly initialised HuBERT-base-sized Sylber model
(``EncoderConfig()``: 7 conv layers, 9 transformer layers, d = 768; seed 0), the same
thresholds, the same torch thread count and the same audio:

* **pipeline**: :func:`speechunits.tokenize.job.run_job` in-process, ``nj = 1``: fairseq2
  audio pipeline (parallel decoding, length-sorted buckets of ``--batch-seconds`` padded audio,
  prefetch), one padded forward pass per bucket, segmentation + segment means on a worker
  thread overlapping the next forward pass, resumable unit-set writer (segments + float16
  embeddings on disk).
* **per-utterance**: what the reference inference package does: for each utterance, load it
  (``speechunits.audio.load_audio``), run the model on it alone, ``greedy_segment``,
  ``segment_means``; results are kept in a list (nothing written).

Each variant runs in its own subprocess; the variants run back to back (``--repeats N``
interleaves them N times). Reported per run: wall seconds of the tokenization loop (model
load, imports and checkpoint hashing excluded), whole-process wall seconds, utterances per
second, real-time factor (audio seconds / loop wall seconds; higher is faster) and peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the subprocess: includes torch and the
model). The script also checks that both variants give the same segments per utterance.

Audio: a Kaldi data dir / JSONL manifest given by ``--data`` (default ``/tmp/bs/data/test``,
200 synthetic LibriSpeech utterances, about 11 minutes, when it exists), else a corpus made
with ``speechunits synth-corpus --layout librispeech --splits test-clean:200`` (Festival).
``--max-minutes`` takes utterances in id order up to that much audio (quick mode).

Usage::

    python benchmarks/tokenize_speed.py                       # all of the corpus (~11 min audio)
    python benchmarks/tokenize_speed.py --max-minutes 1       # quick
    python benchmarks/tokenize_speed.py --repeats 2           # a, b, a, b

Writes the markdown table to ``benchmarks/results/tokenize_speed.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/tmp/bs/data/test")


# ------------------------------------------------------------------ workers (subprocesses)
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker_pipeline(args: argparse.Namespace) -> dict:
    import torch

    from speechunits.tokenize.job import TokenizeSettings, run_job

    torch.set_num_threads(args.threads)
    settings = TokenizeSettings(model=Path(args.ckpt), data=Path(args.manifest), out=Path(args.unit_dir), nj=1,
                                norm_threshold=args.norm_threshold, merge_threshold=args.merge_threshold,
                                batch_seconds=args.batch_seconds, num_workers=args.num_workers, device="cpu",
                                threads=args.threads)
    report = run_job(settings, 0, progress=False)
    from speechunits.units import merge_shards

    merge_shards(args.unit_dir, 1)
    segs = {}
    with open(Path(args.unit_dir) / "units.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            segs[rec["id"]] = [list(p) for p in zip(rec["starts"], rec["ends"])]
    return {"loop_s": report.wall_seconds, "utts": report.utterances, "audio_s": report.audio_seconds,
            "bad": report.bad, "segments": segs}


def worker_loop(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from speechunits.audio import load_audio
    from speechunits.data.jsonl import load_manifest
    from speechunits.errors import AudioError
    from speechunits.encoders.checkpoints import load_encoder
    from speechunits.sylber.segment import greedy_segment, segment_means

    torch.set_num_threads(args.threads)
    model = load_encoder(args.ckpt, map_location="cpu").eval()
    utts = load_manifest(args.manifest, require_text=False)
    sr = int(model.config.sample_rate)
    results: list[tuple[str, np.ndarray, np.ndarray]] = []
    audio_s, bad = 0.0, 0
    start = time.perf_counter()
    for utt in utts:
        try:
            wav = load_audio(utt.audio, sr)
        except AudioError:
            bad += 1
            continue
        with torch.inference_mode():
            feats, _ = model(torch.from_numpy(wav)[None])
        h = feats[0].numpy()
        seg = greedy_segment(h, args.norm_threshold, args.merge_threshold)
        results.append((utt.id, seg, segment_means(h, seg)))
        audio_s += len(wav) / sr
    loop = time.perf_counter() - start
    return {"loop_s": loop, "utts": len(results), "audio_s": audio_s, "bad": bad,
            "segments": {u: s.tolist() for u, s, _ in results}}


def run_worker(args: argparse.Namespace) -> None:
    t0 = float(os.environ.get("TOKENIZE_BENCH_T0", time.time()))
    out = worker_pipeline(args) if args.worker == "pipeline" else worker_loop(args)
    out["peak_rss_mib"] = _peak_rss_mib()
    out["process_s"] = time.time() - t0
    Path(args.result).write_text(json.dumps(out), encoding="utf-8")


# ------------------------------------------------------------------ driver
def prepare_audio(args: argparse.Namespace, work: Path) -> tuple[Path, float, int]:
    """A JSONL manifest of the benchmark audio (limited to --max-minutes), its seconds and count."""
    from speechunits.audio import audio_info
    from speechunits.data.jsonl import load_manifest, write_jsonl_manifest

    data = args.data
    if data is None:
        if DEFAULT_DATA.exists():
            data = DEFAULT_DATA
        else:
            corpus = work / "corpus"
            print(f"generating a synthetic corpus in {corpus} (Festival; a few minutes)", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "speechunits", "synth-corpus", "--layout", "librispeech", "--out",
                            str(corpus), "--splits", f"test-clean:{args.num_utts}", "--nj", "2"], check=True, cwd=REPO)
            from speechunits.data.corpora import load_librispeech

            root = corpus / "LibriSpeech" if (corpus / "LibriSpeech").is_dir() else corpus
            data = work / "synth.jsonl"
            write_jsonl_manifest(load_librispeech(root, "test-clean"), data)
    utts = sorted(load_manifest(data, require_text=False), key=lambda u: u.id)
    chosen, total = [], 0.0
    for u in utts:
        if args.max_minutes is not None and total >= args.max_minutes * 60:
            break
        if u.num_samples is not None and u.sample_rate:
            seconds = u.num_samples / u.sample_rate
        else:
            info = audio_info(u.audio)
            seconds = info.num_samples / info.sample_rate
        chosen.append(u)
        total += seconds
    manifest = work / "bench.jsonl"
    write_jsonl_manifest(chosen, manifest)
    return manifest, total, len(chosen)


def make_model(work: Path) -> Path:
    import torch

    from speechunits.encoders.checkpoints import save_encoder
    from speechunits.encoders.model import EncoderConfig, SpeechEncoder

    torch.manual_seed(0)
    ckpt = work / "sylber-base-random.pt"
    save_encoder(ckpt, SpeechEncoder(EncoderConfig()).eval())
    return ckpt


def spawn(variant: str, args: argparse.Namespace, ckpt: Path, manifest: Path, work: Path, idx: int) -> dict:
    result = work / f"{variant}.{idx}.json"
    unit_dir = work / f"units.{variant}.{idx}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--ckpt", str(ckpt), "--manifest",
           str(manifest), "--unit-dir", str(unit_dir), "--result", str(result), "--threads", str(args.threads),
           "--batch-seconds", repr(args.batch_seconds), "--num-workers", str(args.num_workers),
           "--norm-threshold", repr(args.norm_threshold), "--merge-threshold", repr(args.merge_threshold)]
    env = {**os.environ, "TOKENIZE_BENCH_T0": repr(time.time()), "OMP_NUM_THREADS": str(args.threads)}
    print(f"[{idx}] {variant} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    out = json.loads(result.read_text(encoding="utf-8"))
    print(f"[{idx}] {variant}: {out['utts']} utts, {out['audio_s']:.1f} s audio, loop {out['loop_s']:.1f} s, "
          f"RTF {out['audio_s'] / out['loop_s']:.2f}x, peak RSS {out['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    return out


def table(runs: dict[str, list[dict]], audio_s: float, n_utts: int, args: argparse.Namespace, agree: str) -> str:
    import torch

    def med(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])

    rows = {}
    for v, rs in runs.items():
        loop = med([r["loop_s"] for r in rs])
        rows[v] = {"loop": loop, "proc": med([r["process_s"] for r in rs]), "utt_s": rs[0]["utts"] / loop,
                   "rtf": rs[0]["audio_s"] / loop, "rss": max(r["peak_rss_mib"] for r in rs),
                   "all": ", ".join(f"{r['loop_s']:.1f}" for r in rs)}
    a, b = rows["pipeline"], rows["per-utterance"]
    lines = [
        "# Tokenization speed: `speechunits tokenize` vs a per-utterance loop (CPU)",
        "",
        f"Model: randomly initialised `EncoderConfig()` (HuBERT-base conv front end + 9 transformer layers, d=768). "
        f"Audio: {n_utts} utterances, {audio_s / 60:.1f} min ({audio_s:.0f} s). "
        f"torch threads: {args.threads}; batch seconds: {args.batch_seconds}; decode workers: {args.num_workers}; "
        f"repeats: {args.repeats} (variants run back to back, alternating; median shown).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), torch {torch.__version__}, "
        f"Python {platform.python_version()}.",
        f"Segments identical between the variants: {agree}.",
        "",
        "| variant | loop wall (s) | runs (s) | process wall (s) | utt/s | real-time factor (audio s / wall s) | peak RSS (MiB) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in (("pipeline (`tokenize`, 1 job)", a), ("per-utterance loop", b)):
        lines.append(f"| {name} | {r['loop']:.1f} | {r['all']} | {r['proc']:.1f} | {r['utt_s']:.2f} | "
                     f"{r['rtf']:.2f}x | {r['rss']:.0f} |")
    lines.append(f"| **ratio pipeline / loop** | {a['loop'] / b['loop']:.2f} | | {a['proc'] / b['proc']:.2f} | "
                 f"**{a['utt_s'] / b['utt_s']:.2f}x** | **{a['rtf'] / b['rtf']:.2f}x** | {a['rss'] / b['rss']:.2f} |")
    lines += ["", "Loop wall excludes imports, model loading and checkpoint hashing; process wall includes them. "
              "The pipeline also writes the unit set (segments + float16 embeddings) to disk; the loop keeps its "
              "results in memory. Peak RSS is `ru_maxrss` of each variant's own subprocess.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help=f"Kaldi dir or JSONL manifest (default {DEFAULT_DATA})")
    p.add_argument("--max-minutes", type=float, default=None, help="limit the audio (quick mode)")
    p.add_argument("--num-utts", type=int, default=200, help="utterances to synthesize when no corpus exists")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (both variants)")
    p.add_argument("--batch-seconds", type=float, default=60.0)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--norm-threshold", type=float, default=2.6)
    p.add_argument("--merge-threshold", type=float, default=0.8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tokenize_speed.md")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    # worker mode (internal)
    p.add_argument("--worker", choices=("pipeline", "per-utterance"), help=argparse.SUPPRESS)
    for name in ("--ckpt", "--manifest", "--unit-dir", "--result"):
        p.add_argument(name, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        run_worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="tokenize_speed.", dir=args.work) as tmp:
        work = Path(tmp)
        manifest, audio_s, n_utts = prepare_audio(args, work)
        print(f"audio: {n_utts} utterances, {audio_s / 60:.1f} min", file=sys.stderr)
        ckpt = make_model(work)
        runs: dict[str, list[dict]] = {"pipeline": [], "per-utterance": []}
        for i in range(args.repeats):
            for variant in ("pipeline", "per-utterance"):
                runs[variant].append(spawn(variant, args, ckpt, manifest, work, i))
        a, b = runs["pipeline"][0]["segments"], runs["per-utterance"][0]["segments"]
        same = sum(1 for u in b if a.get(u) == b[u])
        agree = f"{same} of {len(b)} utterances"
        md = table(runs, audio_s, n_utts, args, agree)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
