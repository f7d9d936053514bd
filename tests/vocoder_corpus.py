"""A tiny corpus for the vocoder tests: tones as audio, a data dir, a unit set with gaps and
embeddings, an F0 dir; tiny model options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechunits.audio import write_audio
from speechunits.units import UnitSetWriter

SR, HOP, UNIT_HOP = 16000, 160, 320
VOCAB, SILENCE, EMB_DIM = 5, 4, 3
MEL = {"sample_rate": SR, "n_fft": 512, "win_length": 512, "hop_length": HOP, "n_mels": 20, "f_max": 8000.0}
TINY_GEN = {"dim": 16, "intermediate_dim": 32, "num_layers": 1}
DISCS = "[mrd]"
DISC_OPTS = ["task.disc_overrides.mrd.channels=4", "task.disc_overrides.mrd.resolution_scale=0.5"]


def model_overrides(input_: str, *extra: str) -> list[str]:
    """``task.model.*`` overrides of a tiny iSTFT model reading ``input_``."""
    mel = [f"task.model.mel.{k}={v}" for k, v in MEL.items()]
    gen = [f"task.model.generator_overrides.{k}={v}" for k, v in TINY_GEN.items()]
    return [*DISC_OPTS, "task.model.generator=istft", f"task.model.input={input_}", "task.model.cond_dim=8",
            "task.model.duration_channels=8", *mel, *gen, *extra]


def make_corpus(root: Path, n: int = 6, *, broken: bool = False) -> dict[str, Path]:
    """``root/wav``, a data dir ``root/data``, a unit set ``root/units`` (frame ids with gaps, silence 4,
    embeddings) and an F0 dir ``root/f0``. ``broken`` adds a record whose unit id is out of range."""
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = []
    f0_dir = root / "f0" / "f0"
    f0_dir.mkdir(parents=True, exist_ok=True)
    with UnitSetWriter(root / "units", kind="frame", sample_rate=SR, hop=UNIT_HOP, vocab_size=VOCAB,
                       special_ids={"silence": SILENCE}, audio_root=str(root / "wav")) as w:
        for i in range(n):
            uid = f"utt{i:02d}"
            frames = 20 + 3 * i
            ids = rng.integers(0, SILENCE, frames)
            freq = 120 + 40 * ids
            t = np.arange(frames * UNIT_HOP) / SR
            wav = 0.3 * np.sin(2 * np.pi * np.repeat(freq, UNIT_HOP) * t).astype(np.float32)
            write_audio(root / "wav" / f"{uid}.flac", wav, SR)
            spk = f"s{i % 2}"
            lines.append(json.dumps({"id": uid, "audio": str(root / "wav" / f"{uid}.flac"), "speaker": spk,
                                     "text": f"TEXT {i}", "num_samples": len(wav), "sample_rate": SR}))
            # tokens: the runs of equal ids, every 4th run left out (a gap: silence)
            change = np.flatnonzero(np.diff(ids)) + 1
            run_s = np.concatenate([[0], change]).tolist()
            run_e = np.concatenate([change, [frames]]).tolist()
            keep = [j for j in range(len(run_s)) if j % 4 != 3]
            units = [int(ids[run_s[j]]) for j in keep]
            starts = [int(run_s[j]) for j in keep]
            ends = [int(run_e[j]) for j in keep]
            w.add(id=uid, audio=f"{uid}.flac", num_samples=len(wav), sample_rate=SR, starts=starts, ends=ends,
                  units=units, speaker=spk, text=f"TEXT {i}",
                  embeddings=rng.normal(size=(len(units), EMB_DIM)).astype(np.float32))
            f0 = np.repeat(freq, 2).astype(np.float32)  # 10 ms hop
            f0[:3] = 0.0
            np.save(f0_dir / f"{uid}.npy", f0)
    (root / "data" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "f0" / "meta.json").write_text(json.dumps({
        "format": "speechunits.f0/1", "hop_seconds": 0.01, "floor_hz": 60.0, "ceiling_hz": 500.0,
        "method": "praat-ac", "num_utterances": n, "log_f0_mean": 5.3, "log_f0_std": 0.3}))
    if broken:
        path = root / "units" / "units.jsonl"
        recs = path.read_text().splitlines()
        bad = json.loads(recs[1])
        bad["units"][0] = 99  # out of the vocabulary
        recs[1] = json.dumps(bad, separators=(",", ":"))
        path.write_text("\n".join(recs) + "\n")
    return {"wav": root / "wav", "data": root / "data", "units": root / "units", "f0": root / "f0"}
