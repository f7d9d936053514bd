"""The toolkit without fairseq2: with every import of ``fairseq2``/``fairseq2n`` blocked (as where the extra is
not installed, or where fairseq2n does not match torch), every speechunits module imports, ``speechunits --help``
works, and a data pipeline with backend "auto" runs on torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib, io, json, logging, pkgutil, runpy, sys
    from contextlib import redirect_stdout

    attempts = []

    class BlockFairseq2:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fairseq2", "fairseq2n"):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, BlockFairseq2())
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    import speechunits
    modules = []
    for info in pkgutil.walk_packages(speechunits.__path__, "speechunits."):
        if info.name != "speechunits.__main__":  # runs the CLI: checked below with --help
            importlib.import_module(info.name)
            modules.append(info.name)

    sys.argv = ["speechunits", "--help"]
    help_text = io.StringIO()
    with redirect_stdout(help_text):
        try:
            runpy.run_module("speechunits", run_name="__main__")
        except SystemExit as stop:
            assert stop.code in (0, None), stop.code

    import numpy as np, soundfile as sf
    from speechunits.data.pipeline import build_audio_pipeline
    from speechunits.data.utterance import Utterance
    from pathlib import Path
    wav_dir = Path(WAV_DIR)
    utts = []
    for i in range(5):
        sf.write(wav_dir / f"{i}.wav", np.full(1600 * (i + 1), 0.01 * i, dtype=np.float32), 16000)
        utts.append(Utterance(id=str(i), audio=str(wav_dir / f"{i}.wav")))
    pipe = build_audio_pipeline(utts, max_batch_seconds=1.0, num_parallel_calls=2)
    ids = [i for batch in pipe for i in batch.ids]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq2", "fairseq2n"))
    print(json.dumps({"modules": modules, "help": help_text.getvalue(), "backend": pipe.backend, "ids": ids,
                      "loaded": loaded, "attempts": attempts}))
    """
)


def test_speechunits_imports_and_runs_without_fairseq2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPEECHUNITS_DATA_BACKEND"}
    script = SCRIPT.replace("WAV_DIR", repr(str(tmp_path)))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["modules"]) > 50 and "speechunits.data.pipeline_fairseq2" in out["modules"]
    assert "usage: speechunits" in out["help"] and "tokenize" in out["help"]
    assert out["backend"] == "torch" and sorted(out["ids"]) == ["0", "1", "2", "3", "4"]
    assert out["loaded"] == []
    assert out["attempts"], "the backend probe never looked for fairseq2n (the blocker was not exercised)"
    assert "data pipeline backend: torch (fairseq2n cannot be imported" in r.stderr
