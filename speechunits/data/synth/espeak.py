"""espeak-ng speakers (voice variants m1..m7/f1..f5, speeds, pitches) for the FSC-shaped corpus."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from speechunits.data.synth.voices import Speaker
from speechunits.errors import ExternalToolError

PACKAGE = "espeak-ng"


def espeak_binary() -> str:
    """Path of ``espeak-ng``; ExternalToolError naming the Debian package when missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ExternalToolError(None, f"espeak-ng is not installed: install the Debian package {PACKAGE} (`make install`)")
    return exe


def synthesize_espeak(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` with an espeak-ng speaker: (float32 mono wave, sample rate 22050)."""
    exe = espeak_binary()
    with tempfile.TemporaryDirectory(prefix="su-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        cmd = [exe, "-v", speaker.voice, "-s", str(speaker.speed or 160), "-p", str(speaker.pitch or 50), "-w", str(out), text]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip()[-500:]
            raise ExternalToolError(None, f"espeak-ng failed on {text!r} (voice {speaker.voice}): {tail or proc.returncode}")
        wav, sr = sf.read(out, dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if wav.size == 0:
        raise ExternalToolError(None, f"espeak-ng produced no audio for {text!r} (voice {speaker.voice})")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)
