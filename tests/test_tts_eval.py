"""tts-evaluate and tts-results on synthesis output directories built here from real synthetic
speech (a Festival LJSpeech-layout corpus with recorded prosody): pitch-shifted copies of the
references (transfer correlation ~ the labels', +2 semitones = 200 cents), a constant output
(no correlation), permuted copies (a known correlation near 0), prior samples at two
temperatures with known spreads, diagonal and broken attention matrices, and bad input."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from speechunits.cli import main
from speechunits.data.jsonl import load_manifest, write_jsonl_manifest
from speechunits.data.utterance import Utterance
from speechunits.errors import ManifestError
from speechunits.eval.error_rates import error_rates
from speechunits.eval.prosody_metrics import pearson, utterance_prosody
from speechunits.text2speech import evaluate_tts, read_prosody_labels, read_synth_manifest

SR = 22050
NUM_UTTS = 12
BOOT = 300


# ------------------------------------------------------------------ building synthesis output dirs
def shifted(wave: np.ndarray, semitones: float) -> np.ndarray:
    """``wave`` played 2^(semitones/12) times faster: F0 up by ``semitones``, durations shorter by as much."""
    k = 2 ** (semitones / 12)
    return scipy.signal.resample(wave, int(round(len(wave) / k))).astype(np.float32)


def diagonal_attention(t_dec: int, n: int, seed: int) -> np.ndarray:
    """A noisy but monotonic alignment: a Gaussian bump moving along the diagonal, rows summing to 1."""
    rng = np.random.default_rng(seed)
    centre = np.clip((np.arange(t_dec) + 0.5) * n / t_dec - 0.5 + rng.normal(0, 0.4, t_dec), 0, n - 1)
    att = np.exp(-0.5 * ((np.arange(n)[None] - centre[:, None]) / 0.8) ** 2) + rng.uniform(0, 0.001, (t_dec, n))
    return (att / att.sum(1, keepdims=True)).astype(np.float16)


def stuck_attention(t_dec: int, n: int) -> np.ndarray:
    """Attention that stops moving halfway through the text (the decoder babbles on)."""
    centre = np.minimum(np.arange(t_dec) * n / t_dec, n // 2)
    att = np.exp(-0.5 * ((np.arange(n)[None] - centre[:, None]) / 0.8) ** 2)
    return (att / att.sum(1, keepdims=True)).astype(np.float16)


def write_synth_dir(out: Path, rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> Path:
    """A tts-synthesize output directory: each row gives ``wave`` (written to wavs/), ``att``
    (written to attention/, None: no file) and any manifest keys that differ from the defaults."""
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / "attention").mkdir(exist_ok=True)
    lines = []
    for spec in rows:
        spec = dict(spec)
        wave, att = spec.pop("wave"), spec.pop("att", "diagonal")
        uid = spec["id"]
        sf.write(out / "wavs" / f"{uid}.wav", wave, SR)
        t_dec = max(2, len(wave) // 256)
        n = spec.get("num_symbols", len(spec["text"]))
        if isinstance(att, str) and att == "diagonal":
            att = diagonal_attention(t_dec, n, seed=len(lines))
        if att is not None:
            np.save(out / "attention" / f"{uid}.npy", att)
            t_dec = att.shape[0]
        line = {"id": uid, "source_id": uid.split(".")[0], "text": "", "num_symbols": n,
                "audio": f"wavs/{uid}.wav", "sample_rate": SR, "num_samples": len(wave), "mode": "transfer",
                "reference_id": uid.split(".")[0], "reference_audio": None, "seed": 0, "temperature": None,
                "posterior_mean": True, "kl": None, "decoder_steps": t_dec, "stop_fired": True,
                "attention": None if att is None else f"attention/{uid}.npy"}
        line.update(spec)
        lines.append(line)
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    meta = {"model": "model.pt", "model_sha256": "0" * 64, "prosody": "V", "capacity": 50, "vocoder": "griffin-lim",
            **(meta or {})}
    (out / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


# ------------------------------------------------------------------ the reference corpus
class Corpus:
    def __init__(self, root: Path) -> None:
        assert main(["synth-corpus", "--layout", "ljspeech", "--voice", "kal", "--num-utts", str(NUM_UTTS),
                     "--out", str(root / "corpus"), "--seed", "1"]) == 0
        assert main(["prepare-data", "--corpus", "ljspeech", "--corpus-dir", str(root / "corpus" / "LJSpeech-1.1"),
                     "--split", "all", "--out", str(root / "data")]) == 0
        self.data = root / "data"
        self.labels_path = root / "corpus" / ".synth" / "ljspeech" / "utterances.json"
        self.labels = read_prosody_labels(self.labels_path)
        self.utts = sorted(load_manifest(self.data), key=lambda u: u.id)
        self.waves = {u.id: sf.read(u.audio, dtype="float32")[0] for u in self.utts}
        self.prosody = {uid: utterance_prosody(w, SR) for uid, w in self.waves.items()}
        assert len(self.utts) == NUM_UTTS

    def row(self, utt: Utterance, wave: np.ndarray, suffix: str = "s0", **keys: Any) -> dict[str, Any]:
        return {"id": f"{utt.id}.{suffix}", "text": utt.text, "wave": wave, "reference_audio": utt.audio, **keys}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("tts_ref"))


BROKEN = {"LJ001-0003": "stuck", "LJ001-0007": "no stop"}


@pytest.fixture(scope="module")
def copy_dir(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Transfer outputs = the references 2 semitones up; two broken alignments."""
    rows = []
    for i, u in enumerate(corpus.utts):
        wave = shifted(corpus.waves[u.id], 2.0)
        extra: dict[str, Any] = {"kl": 40.0 + i}
        if BROKEN.get(u.id) == "stuck":
            extra["att"] = stuck_attention(len(wave) // 256, len(u.text))
        if BROKEN.get(u.id) == "no stop":
            extra["stop_fired"] = False
        rows.append(corpus.row(u, wave, **extra))
    return write_synth_dir(tmp_path_factory.mktemp("synth") / "copy", rows)


@pytest.fixture(scope="module")
def copy_report(corpus: Corpus, copy_dir: Path) -> dict[str, Any]:
    return evaluate_tts(copy_dir, corpus.data, labels=corpus.labels_path, bootstrap=BOOT, progress=False)


# ------------------------------------------------------------------ transfer, quality, attention
@pytest.mark.festival
def test_shifted_copies_transfer_the_labelled_prosody(corpus: Corpus, copy_report: dict[str, Any]) -> None:
    rep = copy_report
    assert rep["num_rows"] == rep["num_scored"] == NUM_UTTS
    assert rep["missing"] == rep["bad"] == rep["no_reference"] == rep["no_label"] == []
    ids = [u.id for u in corpus.utts]
    label_st = [corpus.labels[i].f0_semitones for i in ids]
    # Festival realises its F0 setting closely: the copies correlate as the references do
    expected_f0 = pearson(label_st, [corpus.prosody[i]["median_f0_semitones"] for i in ids])
    f0 = rep["transfer"]["f0"]
    assert rep["transfer"]["source"] == "labels" and f0["n"] == NUM_UTTS
    assert f0["r"] > 0.9 and f0["r"] == pytest.approx(expected_f0, abs=0.02)
    assert f0["lo"] < f0["r"] < f0["hi"] <= 1.0
    expected_dur = pearson([corpus.labels[i].stretch for i in ids],
                           [corpus.prosody[i]["speech_seconds"] / len(u.text) for i, u in zip(ids, corpus.utts)])
    assert rep["transfer"]["duration"]["r"] == pytest.approx(expected_dur, abs=0.03)
    assert rep["transfer"]["duration"]["r"] > 0.5
    # each output is measured 2 semitones above its reference
    by_id = {u["id"]: u for u in rep["utterances"]}
    shifts = [by_id[f"{i}.s0"]["median_f0_semitones"] - corpus.prosody[i]["median_f0_semitones"] for i in ids]
    assert np.median(shifts) == pytest.approx(2.0, abs=0.15)
    # quality against the reference recording: 200 cents off, below the 20 % gross-error line
    assert rep["log_f0_rmse_cents"]["value"] == pytest.approx(200, abs=20) and rep["log_f0_rmse_cents"]["n"] == NUM_UTTS
    assert rep["ffe_pct"]["value"] < 10 and rep["ffe_pct"]["n"] == NUM_UTTS
    assert 3 < rep["mcd_db"]["value"] < 20
    assert rep["kl_nats"] == {"value": pytest.approx(40 + (NUM_UTTS - 1) / 2), "n": NUM_UTTS}


@pytest.mark.festival
def test_attention_failures_are_counted(copy_report: dict[str, Any]) -> None:
    att = copy_report["attention"]
    assert att["failure_pct"] == {"value": pytest.approx(100 * 2 / NUM_UTTS), "n": NUM_UTTS}
    assert sorted(att["failed"]) == sorted(f"{i}.s0" for i in BROKEN)
    assert att["reasons"] == {"never reaches end": 1, "no stop": 1}
    assert 0.9 < att["diagonality"]["value"] <= 1.0  # 10 diagonal ones near 1, one stuck one well below
    by_id = {u["id"]: u for u in copy_report["utterances"]}
    assert by_id["LJ001-0003.s0"]["attention"]["diagonality"] < 0.8
    assert by_id["LJ001-0001.s0"]["attention"] == {"failed": False, "reasons": [], "diagonality": pytest.approx(1.0, abs=0.02),
                                                   "focus_rate": pytest.approx(0.45, abs=0.15)}


@pytest.mark.festival
def test_transfer_against_the_reference_audio_without_labels(corpus: Corpus, copy_dir: Path) -> None:
    rep = evaluate_tts(copy_dir, corpus.data, bootstrap=BOOT, progress=False)
    assert rep["transfer"]["source"] == "reference audio"
    # the output is the reference, time-scaled: its measured prosody follows exactly
    assert rep["transfer"]["f0"]["r"] > 0.99 and rep["transfer"]["f0"]["n"] == NUM_UTTS
    assert rep["transfer"]["duration"]["r"] > 0.99 and rep["transfer"]["duration"]["n"] == NUM_UTTS


@pytest.mark.festival
def test_constant_and_permuted_outputs_do_not_transfer(corpus: Corpus, tmp_path: Path) -> None:
    first = corpus.waves[corpus.utts[0].id]
    const = write_synth_dir(tmp_path / "const", [corpus.row(u, first) for u in corpus.utts])
    rep = evaluate_tts(const, corpus.data, labels=corpus.labels_path, bootstrap=BOOT, progress=False)
    assert rep["transfer"]["f0"] == {"r": None, "lo": None, "hi": None, "n": NUM_UTTS}  # nothing varies
    # permuted copies: output i is reference perm[i]; pick the permutation whose correlation is nearest 0
    ids = [u.id for u in corpus.utts]
    label_st = np.array([corpus.labels[i].f0_semitones for i in ids])
    measured = np.array([corpus.prosody[i]["median_f0_semitones"] for i in ids])
    perms = [np.random.default_rng(s).permutation(NUM_UTTS) for s in range(20)]
    perm = min(perms, key=lambda p: abs(pearson(label_st, measured[p])))
    expected = pearson(label_st, measured[perm])
    assert abs(expected) < 0.2
    shuffled = write_synth_dir(tmp_path / "perm", [corpus.row(u, corpus.waves[ids[j]]) for u, j in zip(corpus.utts, perm)])
    rep = evaluate_tts(shuffled, corpus.data, labels=corpus.labels_path, bootstrap=BOOT, progress=False)
    f0 = rep["transfer"]["f0"]
    assert f0["r"] == pytest.approx(expected, abs=0.01) and f0["lo"] < 0 < f0["hi"]
    copy = evaluate_tts(write_synth_dir(tmp_path / "same", [corpus.row(u, corpus.waves[u.id]) for u in corpus.utts]),
                        corpus.data, bootstrap=BOOT, progress=False)
    assert copy["mcd_db"]["value"] == pytest.approx(0.0, abs=0.01) and copy["ffe_pct"]["value"] < 1.0
    assert rep["mcd_db"]["value"] > 5  # another sentence's audio is far from this one's recording


# ------------------------------------------------------------------ diversity across seeds
SPREADS = {0.5: (-0.5, 0.0, 0.5), 1.0: (-2.0, 0.0, 2.0)}
"""Per temperature, the semitone shift of seed 0, 1, 2: spreads (std, ddof 1) of 0.5 and 2 semitones."""
PRIOR_SOURCES = 4


@pytest.fixture(scope="module")
def prior_dirs(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("prior")
    dirs = {}
    for temperature, shifts in SPREADS.items():
        rows = [corpus.row(u, shifted(corpus.waves[u.id], s), suffix=f"t{temperature}.s{seed}", mode="text",
                           reference_id=None, reference_audio=None, seed=seed, temperature=temperature,
                           posterior_mean=False)
                for u in corpus.utts[:PRIOR_SOURCES] for seed, s in enumerate(shifts)]
        dirs[temperature] = write_synth_dir(root / f"t{temperature}", rows)
    return dirs


@pytest.mark.festival
def test_diversity_grows_with_temperature(corpus: Corpus, prior_dirs: dict[float, Path], tmp_path: Path) -> None:
    # one directory holding both temperatures (manifest lines pointing into the two dirs, absolute paths)
    both = tmp_path / "both"
    both.mkdir()
    lines = []
    for d in prior_dirs.values():
        for line in (d / "manifest.jsonl").read_text().splitlines():
            obj = json.loads(line)
            obj["audio"], obj["attention"] = str(d / obj["audio"]), str(d / obj["attention"])
            lines.append(json.dumps(obj))
    (both / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (both / "meta.json").write_text((prior_dirs[1.0] / "meta.json").read_text())
    rep = evaluate_tts(both, corpus.data, bootstrap=BOOT, progress=False)
    assert rep["num_scored"] == 2 * 3 * PRIOR_SOURCES
    groups = {g["temperature"]: g for g in rep["diversity"]}
    assert sorted(groups) == [0.5, 1.0]
    for temperature, shifts in SPREADS.items():
        g = groups[temperature]
        assert (g["mode"], g["posterior_mean"], g["sources"], g["max_seeds"]) == ("text", False, PRIOR_SOURCES, 3)
        assert g["f0_spread_semitones"]["value"] == pytest.approx(float(np.std(shifts, ddof=1)), abs=0.12)
        assert g["f0_spread_semitones"]["n"] == PRIOR_SOURCES
        expected = np.mean([np.std([corpus.prosody[u.id]["speech_seconds"] * 2 ** (-s / 12) for s in shifts], ddof=1)
                            for u in corpus.utts[:PRIOR_SOURCES]])
        assert g["duration_spread_seconds"]["value"] == pytest.approx(expected, abs=0.02)
    # prior samples have no reference: no transfer pairs, no KL; MCD against the recording of their text
    assert rep["transfer"]["f0"]["n"] == 0 and rep["transfer"]["f0"]["r"] is None
    assert rep["kl_nats"] == {"value": None, "n": 0}
    assert rep["mcd_db"]["n"] == 2 * 3 * PRIOR_SOURCES
    assert {u["text_reference_id"] for u in rep["utterances"]} == {u.id for u in corpus.utts[:PRIOR_SOURCES]}


# ------------------------------------------------------------------ tts-results
@pytest.mark.festival
def test_tts_results_tables_and_figures(corpus: Corpus, copy_dir: Path, prior_dirs: dict[float, Path],
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = {}
    for name, d in [("copy", copy_dir), ("prior05", prior_dirs[0.5]), ("prior10", prior_dirs[1.0])]:
        out = tmp_path / f"{name}.json"
        args = ["tts-evaluate", "--synth", str(d), "--references", str(corpus.data), "--out", str(out),
                "--bootstrap", str(BOOT), "--quiet"]
        if name == "copy":
            args += ["--prosody-labels", str(corpus.labels_path)]
        assert main(args) == 0
        reports[name] = json.loads(out.read_text())
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["num_scored"] == reports[name]["num_scored"]
    f0 = reports["copy"]["transfer"]["f0"]
    results = tmp_path / "RESULTS.md"
    figs = tmp_path / "figures"
    assert main(["tts-results", "--reports", f"VAE copy={tmp_path / 'copy.json'}", f"prior t0.5={tmp_path / 'prior05.json'}",
                 str(tmp_path / "prior10.json"), "--out", str(results), "--figures", str(figs),
                 "--attention", str(copy_dir), "--attention-utt", "LJ001-0003.s0",
                 "--contours", str(prior_dirs[0.5]), str(prior_dirs[1.0])]) == 0
    text = results.read_text()
    copy_line = next(line for line in text.splitlines() if line.startswith("| VAE copy |"))
    cells = [c.strip() for c in copy_line.strip("|").split("|")]
    assert cells[1:4] == ["V", f"{reports['copy']['kl_nats']['value']:.1f}", "50"]
    assert cells[4] == f"{f0['r']:.2f} [{f0['lo']:.2f}, {f0['hi']:.2f}] (n={NUM_UTTS})"
    assert cells[6:8] == ["–", "–"]  # no posterior means in these rows: no latent probe
    assert cells[8] == f"{reports['copy']['ffe_pct']['value']:.1f}" and cells[9] == f"{reports['copy']['mcd_db']['value']:.2f}"
    assert cells[10] == f"{100 * 2 / NUM_UTTS:.1f}" and cells[11] == "–" and cells[12] == f"{NUM_UTTS}/{NUM_UTTS}"
    assert "| prior10 |" in text
    div = text.split("## Diversity across seeds")[1]
    spread05 = reports["prior05"]["diversity"][0]["f0_spread_semitones"]["value"]
    assert f"| prior t0.5 | text | 0.5 | {spread05:.2f} |" in div and "| prior10 | text | 1 |" in div
    assert "| VAE copy |" not in div  # one seed per sentence: no spread to show
    attention_png = figs / "attention_LJ001-0003.s0.png"
    contour_png = figs / f"f0_contours_{corpus.utts[0].id}.png"  # default: most samples, then smallest id
    for png in (attention_png, contour_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"]({png.relative_to(tmp_path)})" in text
    import matplotlib.image

    assert matplotlib.image.imread(contour_png).shape[1] > 1.5 * matplotlib.image.imread(contour_png).shape[0]  # two panels
    # a clean CLI: figure options without --figures, or --figures without a figure, are usage errors
    assert main(["tts-results", "--reports", str(tmp_path / "copy.json"), "--out", str(results),
                 "--attention", str(copy_dir)]) == 2
    assert main(["tts-results", "--reports", str(tmp_path / "copy.json"), "--out", str(results),
                 "--figures", str(figs)]) == 2
    assert main(["tts-results", "--reports", str(tmp_path / "copy.json"), "--out", str(results), "--figures", str(figs),
                 "--contours", str(copy_dir)]) == 2  # no prior samples there: ManifestError, exit 2
    assert "no prior samples" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input (no festival needed)
def _tone(freq: float, seconds: float = 0.8) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, 6)) * 0.2 * np.minimum(1, np.minimum(t, t[::-1]) / 0.02)
    return np.concatenate([np.zeros(SR // 10), wave, np.zeros(SR // 10)]).astype(np.float32)


@pytest.fixture()
def tone_refs(tmp_path: Path) -> tuple[Path, list[Utterance]]:
    utts = []
    for i, f0 in enumerate([100.0, 120.0, 140.0, 160.0, 180.0]):
        path = tmp_path / "ref" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _tone(f0, 0.6 + 0.1 * i), SR)
        utts.append(Utterance(id=f"u{i}", audio=str(path), text=f"tone number {i}"))
    write_jsonl_manifest(utts, tmp_path / "ref" / "manifest.jsonl")
    return tmp_path / "ref", utts


def _tone_rows(utts: Sequence[Utterance]) -> list[dict[str, Any]]:
    return [{"id": f"{u.id}.s0", "text": u.text, "wave": shifted(sf.read(u.audio, dtype="float32")[0], 1.0)}
            for u in utts]


def test_missing_and_unreadable_audio_are_listed_and_left_out(tone_refs: tuple[Path, list[Utterance]],
                                                              tmp_path: Path) -> None:
    ref, utts = tone_refs
    synth = write_synth_dir(tmp_path / "synth", _tone_rows(utts))
    clean = evaluate_tts(write_synth_dir(tmp_path / "clean", _tone_rows(utts[:2])), ref, progress=False)
    (synth / "wavs" / "u2.s0.wav").unlink()
    (synth / "wavs" / "u3.s0.wav").write_bytes(b"RIFF\x00\x00garbage")
    wav4 = synth / "wavs" / "u4.s0.wav"
    sf.write(wav4, sf.read(wav4, dtype="float32")[0][:1000], SR)  # readable, but not what the manifest says
    rep = evaluate_tts(synth, ref, progress=False)
    assert rep["num_rows"] == 5 and rep["num_scored"] == 2
    assert [m.split("\t")[0] for m in rep["missing"]] == ["u2.s0"]
    assert [b.split("\t")[0] for b in rep["bad"]] == ["u3.s0", "u4.s0"]
    assert "manifest says" in rep["bad"][1]
    for key in ("mcd_db", "ffe_pct", "log_f0_rmse_cents", "kl_nats"):
        assert rep[key] == clean[key]
    assert rep["mcd_db"]["n"] == 2 and rep["attention"]["failure_pct"]["n"] == 2
    assert rep["log_f0_rmse_cents"]["value"] == pytest.approx(100, abs=15)


def test_unusable_attention_and_missing_reference(tone_refs: tuple[Path, list[Utterance]], tmp_path: Path) -> None:
    ref, utts = tone_refs
    rows = _tone_rows(utts)
    rows[1]["att"] = np.ones((3, 3), np.float16)  # shape disagrees with decoder_steps/num_symbols below
    rows[1]["decoder_steps"] = 50
    rows[2]["source_id"] = rows[2]["reference_id"] = "not-in-refs"
    rows[3]["att"] = None  # a model without attention
    synth = write_synth_dir(tmp_path / "synth", rows)
    (synth / "attention" / "u0.s0.npy").write_bytes(b"not numpy")
    rep = evaluate_tts(synth, ref, progress=False)
    assert rep["num_scored"] == 5
    assert [b.split("\t")[0] for b in rep["bad_attention"]] == ["u0.s0", "u1.s0"]
    assert "decoder_steps=50" in rep["bad_attention"][1]
    assert rep["attention"]["failure_pct"]["n"] == 2  # u2, u4
    assert rep["no_reference"] == ["u2.s0"] and rep["mcd_db"]["n"] == 4
    assert rep["bad_prosody_reference"] == ["not-in-refs\tnot in the reference data dir and no reference_audio"]


def test_manifest_line_missing_keys_names_file_and_line(tone_refs: tuple[Path, list[Utterance]], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref, utts = tone_refs
    synth = write_synth_dir(tmp_path / "synth", _tone_rows(utts[:3]))
    manifest = synth / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["stop_fired"], broken["kl"]
    manifest.write_text("\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    with pytest.raises(ManifestError) as err:
        read_synth_manifest(synth)
    assert err.value.line == 2 and err.value.path == manifest
    assert "kl" in err.value.problem and "stop_fired" in err.value.problem
    assert main(["tts-evaluate", "--synth", str(synth), "--references", str(ref), "--out", str(tmp_path / "r.json")]) == 2
    assert f"{manifest}:2: missing key(s) kl, stop_fired" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    # wrong types and values, duplicates, a missing meta.json
    for bad, message in [({"mode": "sing"}, "'mode' must be one of"), ({"seed": "0"}, "'seed' must be an integer"),
                         ({"temperature": True}, "'temperature' must be a number or null"),
                         ({"num_symbols": 0}, "'num_symbols' must be positive"),
                         ({"id": json.loads(lines[0])["id"]}, "duplicate id")]:
        obj = {**json.loads(lines[1]), **bad}
        manifest.write_text("\n".join([lines[0], json.dumps(obj)]) + "\n")
        with pytest.raises(ManifestError, match=message) as err:
            read_synth_manifest(synth)
        assert err.value.line == 2
    manifest.write_text(lines[0] + "\n")
    (synth / "meta.json").unlink()
    with pytest.raises(ManifestError, match="meta.json"):
        evaluate_tts(synth, ref, progress=False)


class FakeJudge:
    """Returns fixed transcripts and records what it was given."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.calls: list[tuple[int, list[int]]] = []

    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int, beam: int = 1) -> list[str]:
        self.calls.append((sample_rate, [len(w) for w in waves]))
        out, self.texts = self.texts[: len(waves)], self.texts[len(waves):]
        return out


def test_judge_error_rates_on_the_synthesized_text(tone_refs: tuple[Path, list[Utterance]], tmp_path: Path) -> None:
    ref, utts = tone_refs
    rows = _tone_rows(utts[:3])
    rows[2].update(text="a new  sentence", mode="style")  # a style row says another text than its reference
    synth = write_synth_dir(tmp_path / "synth", rows)
    (synth / "wavs" / "u1.s0.wav").unlink()  # not transcribed, not counted
    judge = FakeJudge(["TONE NUMBER 0", "A NEW SENTENCX"])
    rep = evaluate_tts(synth, ref, judge=judge, progress=False)
    assert judge.calls == [(SR, [len(rows[0]["wave"]), len(rows[2]["wave"])])]
    expected = error_rates(["TONE NUMBER 0", "A NEW SENTENCE"], ["TONE NUMBER 0", "A NEW SENTENCX"])
    assert rep["judge"] == {"cer": pytest.approx(expected["cer"]), "wer": pytest.approx(expected["wer"]), "n": 2}
    assert rep["judge"]["cer"] == pytest.approx(100 / 27)
    assert [u.get("hypothesis") for u in rep["utterances"]] == ["TONE NUMBER 0", "A NEW SENTENCX"]
    assert evaluate_tts(synth, ref, progress=False)["judge"] is None


def test_tts_evaluate_cli_loads_the_judge(tone_refs: tuple[Path, list[Utterance]], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from speechunits.asr import CharVocab, CTCJudgeModel, FbankConfig, JudgeModelConfig, save_judge

    ref, utts = tone_refs
    torch.manual_seed(0)
    vocab = CharVocab.from_texts([u.text for u in utts])
    model = CTCJudgeModel(JudgeModelConfig(vocab_size=len(vocab), conv_channels=4, hidden=16, num_layers=1))
    judge_path = save_judge(tmp_path / "judge.pt", model, vocab, FbankConfig())
    synth = write_synth_dir(tmp_path / "synth", _tone_rows(utts))
    out = tmp_path / "report.json"
    assert main(["tts-evaluate", "--synth", str(synth), "--references", str(ref), "--judge", str(judge_path),
                 "--out", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    hyps = [u["hypothesis"] for u in rep["utterances"]]
    assert rep["judge"]["n"] == 5 and all(isinstance(h, str) for h in hyps)
    assert rep["judge"]["cer"] == pytest.approx(error_rates([u.text.upper() for u in utts], hyps)["cer"])
    assert json.loads(capsys.readouterr().out)["cer"] == pytest.approx(rep["judge"]["cer"])
    assert not math.isnan(rep["judge"]["cer"])
