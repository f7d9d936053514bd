"""utils/aligned_dev_set.py: aligned recordings cut at pauses into a labelled dev set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from speechunits.data.alignments import Interval, read_textgrid, write_textgrid
from speechunits.data.kaldi import read_kaldi_dir

SCRIPT = Path(__file__).resolve().parents[1] / "utils" / "aligned_dev_set.py"


def test_recordings_are_cut_at_pauses_with_shifted_tiers(tmp_path: Path) -> None:
    rate = 22050
    wav = (0.1 * np.random.default_rng(0).standard_normal(int(8.0 * rate))).astype(np.float32)
    sf.write(tmp_path / "rec.wav", np.stack([wav, wav], axis=1), rate)  # stereo, not 16 kHz: kept as is
    words = [Interval(0.0, 0.5, ""), Interval(0.5, 3.5, "hello"), Interval(3.5, 4.0, "sil"),
             Interval(4.0, 7.5, "world"), Interval(7.5, 8.0, "")]
    phones = [Interval(0.0, 0.5, ""), Interval(0.5, 2.0, "HH"), Interval(2.0, 3.5, "AH0"), Interval(3.5, 4.0, "sil"),
              Interval(4.0, 6.0, "W"), Interval(6.0, 7.5, "ER1"), Interval(7.5, 8.0, "")]
    write_textgrid(tmp_path / "rec.TextGrid", {"words": words, "phones": phones}, xmax=8.0)
    out = tmp_path / "dev"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--min-seconds", "3",
                           "--pair", f"{tmp_path / 'rec.wav'}:{tmp_path / 'rec.TextGrid'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 utterances, 8.0 s" in done.stdout
    assert (out / "data" / "provenance.json").is_file() and (out / "data" / "manifest.jsonl").is_file()
    utts = read_kaldi_dir(out / "data")
    assert [u.id for u in utts] == ["rec-000", "rec-001"] and [u.text for u in utts] == ["hello", "world"]
    second = read_textgrid(out / "alignments" / "rec-001.TextGrid")
    assert [(p.start, p.end, p.label) for p in second["phones"]][:2] == [(0.0, 0.25, "sil"), (0.25, 2.25, "W")]
    info = sf.info(out / "audio" / "rec-001.wav")
    assert info.samplerate == rate and info.channels == 2 and abs(info.duration - 4.25) < 1e-3
