"""Chaos jobs on unit sets and codebooks: cluster, quantize, lm-pack, synthesize, tts-synthesize. See jobs.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checks import summary_check  # noqa: E402
from harness import ChaosJob  # noqa: E402

K, DIM = 8, 16


def _unit_set(d: Path, n_utts: int = 40, seed: int = 0) -> Path:
    """``d/units``: a syllable unit set whose token embeddings come from ``K`` directions (no ids)."""
    from speechunits.units import UnitSetWriter

    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(K, DIM))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    out = d / "units"
    with UnitSetWriter(out, kind="syllable", sample_rate=16000, hop=320, audio_root="wav",
                       producer={"model": "chaos"}) as w:
        for i in range(n_utts):
            n_tok = int(rng.integers(5, 30))
            starts = np.arange(n_tok) * 5
            labels = rng.integers(0, K, n_tok)
            emb = (dirs[labels] + 0.3 * rng.normal(size=(n_tok, DIM))) * rng.uniform(0.5, 3.0, (n_tok, 1))
            uid = f"utt{i:03d}"
            w.add(id=uid, audio=f"{uid}.wav", num_samples=16000 * 3, sample_rate=16000, starts=starts,
                  ends=starts + 4, speaker=f"spk{i % 3}", text="a b", embeddings=emb.astype(np.float32))
    return out


# ------------------------------------------------------------------ cluster
def _build_cluster(d: Path) -> None:
    _unit_set(d)


def _cluster_argv(root: Path) -> list[str]:
    return ["cluster", "--units", "units", "--k", str(K), "--out", "km/km.pt", "--metric", "cosine",
            "--iters", "20", "--tol", "0", "--max-samples", "0", "--device", "cpu", "--seed", "0", "--quiet"]


CLUSTER = ChaosJob("cluster", _build_cluster, _cluster_argv)


# ------------------------------------------------------------------ quantize (in place)
def _build_quantize(d: Path, n_utts: int = 40) -> None:
    from speechunits.cli import main

    _unit_set(d, n_utts)
    code = main(["cluster", "--units", str(d / "units"), "--k", str(K), "--out", str(d / "km.pt"),
                 "--metric", "cosine", "--device", "cpu", "--seed", "0", "--quiet"])
    assert code == 0, code


def _quantize_argv(root: Path) -> list[str]:
    return ["quantize", "--units", "units", "--codebook", "km.pt", "--device", "cpu", "--quiet"]


QUANTIZE = ChaosJob("quantize", _build_quantize, _quantize_argv)


def _quantize_out_argv(root: Path) -> list[str]:
    return [*_quantize_argv(root), "--out", "units_km"]


QUANTIZE_OUT = ChaosJob("quantize-out", _build_quantize, _quantize_out_argv)  # a new unit set (UnitSetWriter)


# ------------------------------------------------------------------ synthesize (a tiny unit vocoder)
def _build_synthesize(d: Path) -> None:
    import torch

    from speechunits.vocoder.config import VocoderConfig
    from speechunits.vocoder.model import Vocoder, save_vocoder
    from vocoder_corpus import MEL, SILENCE, TINY_GEN, UNIT_HOP, VOCAB, make_corpus

    make_corpus(d, n=6, broken=True)  # utt01 has an id out of the vocabulary: bad_utts.txt
    torch.manual_seed(0)
    cfg = VocoderConfig.from_dict({"generator": "istft", "input": "frame_units", "mel": MEL, "cond_dim": 8,
                                   "unit_hop": UNIT_HOP, "vocab_size": VOCAB, "silence_id": SILENCE,
                                   "generator_overrides": TINY_GEN, "duration_channels": 8})
    save_vocoder(d / "vocoder.pt", Vocoder(cfg).eval())


def _synthesize_argv(root: Path) -> list[str]:
    return ["synthesize", "--model", "vocoder.pt", "--units", "units", "--out", "synth", "--device", "cpu",
            "--nj", "2", "--threads", "1"]


def _count_wavs(out: Path) -> int:
    return len(list((out / "wav").glob("*.flac")))


SYNTHESIZE = ChaosJob("synthesize", _build_synthesize, _synthesize_argv, check=summary_check("synth", _count_wavs))



# ------------------------------------------------------------------ tts-synthesize (a tiny Capacitron)
def _build_tts(d: Path) -> None:
    from speechunits.cli import main
    from tts_corpus import make_corpus, tiny_options

    data = make_corpus(d, corrupt=True)  # corrupt.wav: an unreadable reference, listed in bad_utts.txt
    clean = make_corpus(d / "train")
    code = main(["train-tts", "--out-dir", str(d / "tts"), "--device", "cpu",
                 *tiny_options("VT", f"task.train={clean}", "max_steps=2")])
    assert code == 0, code
    for p in sorted((d / "tts").iterdir()):  # only the exported model is an input
        if p.name != "model.pt":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    manifest = data / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join(lines[:4] + lines[-1:]) + "\n", encoding="utf-8")  # 4 sentences + the corrupt one


def _tts_argv(root: Path) -> list[str]:
    return ["tts-synthesize", "--model", "tts/model.pt", "--out", "tts_out", "--data", "data", "--mode", "transfer",
            "--seeds", "0", "--griffin-lim-iters", "2", "--max-frames-per-symbol", "4", "--device", "cpu",
            "--nj", "2", "--threads", "1"]


def _count_tts(out: Path) -> int:
    return len(list((out / "wavs").glob("*.wav")))


TTS_SYNTHESIZE = ChaosJob("tts-synthesize", _build_tts, _tts_argv, check=summary_check("tts_out", _count_tts))


# ------------------------------------------------------------------ lm-pack (with a BPE model trained first)
def _build_lm_pack(d: Path) -> None:
    from speechunits.cli import main

    _build_quantize(d, n_utts=3000)  # enough tokens that packing takes a moment
    assert main(["quantize", "--units", str(d / "units"), "--codebook", str(d / "km.pt"), "--quiet"]) == 0


def _lm_pack_argv(root: Path) -> list[str]:
    return ["lm-pack", "--units", "units", "--out", "lm/train", "--dedup", "true", "--bpe-vocab", "64"]


LM_PACK = ChaosJob("lm-pack", _build_lm_pack, _lm_pack_argv)

CHAOS_JOBS: list[ChaosJob] = [CLUSTER, QUANTIZE, QUANTIZE_OUT, SYNTHESIZE, TTS_SYNTHESIZE, LM_PACK]
