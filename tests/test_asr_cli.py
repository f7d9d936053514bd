"""The train-judge and judge verbs on a tone-coded corpus: resume, judge.pt, scoring, bad
audio and missing transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asr_tones import SR, TEXTS, tone_wave, train_tone_judge, write_tone_corpus
from speechunits.asr.judge import load_judge, save_judge
from speechunits.cli import main
from speechunits.data.jsonl import read_jsonl_manifest, write_jsonl_manifest
from speechunits.errors import ManifestError
from speechunits.train.logger import read_metrics

CONFIG = """\
lr: 5.0e-3
weight_decay: 0.0
schedule: constant
max_steps: 6
save_every: 2
log_every: 1
progress: false
tensorboard: false
task:
  model: {subsampling: 2, conv_channels: 4, hidden: 16, num_layers: 2, dropout: 0.1}
  max_frames: 300
  max_utts: 3
  pool_batches: 2
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones") / "data")


def _train(tmp_path: Path, corpus: Path, out: str, *extra: str) -> int:
    conf = tmp_path / "conf.yaml"
    conf.write_text(CONFIG)
    return main(["train-judge", "--config", str(conf), "--out-dir", str(tmp_path / out),
                 f"task.train={corpus}", f"task.valid={corpus}", *extra])


def test_train_judge_resume_equals_an_uninterrupted_run(tmp_path: Path, corpus: Path) -> None:
    assert _train(tmp_path, corpus, "full") == 0
    full = load_judge(tmp_path / "full" / "judge.pt")
    assert full.vocab.chars[-1] == "Z" and full.extra["step"] == 6
    assert {"valid_cer", "valid_wer"} <= set(full.extra)
    valid = [r for r in read_metrics(tmp_path / "full") if "valid/cer" in r]
    assert valid and valid[-1]["step"] == 6

    assert _train(tmp_path, corpus, "split", "stop_after=3") == 0
    assert not (tmp_path / "split" / "judge.pt").exists()  # not finished: no judge yet
    assert _train(tmp_path, corpus, "split") == 0  # resume=auto continues from step 3 (saved at the stop)
    split = load_judge(tmp_path / "split" / "judge.pt")
    a, b = full.model.state_dict(), split.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must end with the same weights"
    steps = [r["step"] for r in read_metrics(tmp_path / "split") if "loss" in r or "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 6

    mtime = (tmp_path / "split" / "judge.pt").stat().st_mtime_ns
    assert _train(tmp_path, corpus, "split") == 0  # already finished: judge.pt kept as is
    assert (tmp_path / "split" / "judge.pt").stat().st_mtime_ns == mtime


def test_train_judge_batches_are_deterministic_and_sliced(corpus: Path) -> None:
    from speechunits.asr.task import JudgeTask
    from speechunits.train.config import load_config
    from speechunits.train.distributed import DistInfo

    cfg = load_config(None, [f"task.train={corpus}", "task.max_frames=300", "progress=false"])
    one = JudgeTask(cfg)
    assert one.epoch_batches(3) == JudgeTask(cfg).epoch_batches(3)
    assert one.epoch_batches(0) != one.epoch_batches(1)
    flat = sorted(i for b in one.epoch_batches(0) for i in b)
    assert flat == list(range(len(TEXTS)))
    for b in one.epoch_batches(0):
        assert len(b) == 1 or len(b) * max(one.train.lengths[i] for i in b) <= 300
    ranks = [JudgeTask(cfg, DistInfo(rank=r, world_size=2)) for r in range(2)]
    per_rank = [list(t.batches(0)) for t in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(one.epoch_batches(0))
    rows = sum(int(b["feats"].size(0)) for r in per_rank for b in r)
    assert rows >= len(TEXTS)
    skipped = list(one.batches(0, start=2))
    assert len(skipped) == len(one.epoch_batches(0)) - 2
    assert torch.equal(skipped[0]["feats"], list(one.batches(0))[2]["feats"])


def test_train_judge_rejects_unknown_options(tmp_path: Path, corpus: Path) -> None:
    assert _train(tmp_path, corpus, "bad", "task.nonsense=1") == 2


@pytest.fixture(scope="module")
def judge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        judge = train_tone_judge()
    finally:
        torch.set_num_threads(before)
    return save_judge(tmp_path_factory.mktemp("judge") / "judge.pt", judge.model, judge.vocab, judge.fbank)


def test_judge_cli_scores_and_writes_hypotheses(tmp_path: Path, corpus: Path, judge_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hyp.jsonl"
    assert main(["judge", "--model", str(judge_file), "--data", str(corpus), "--out", str(out), "--beam", "3"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["cer"] <= 5.0 and scores["num_utts"] == len(TEXTS) and scores["num_bad"] == 0 and scores["beam"] == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"utt{i:02d}" for i in range(len(TEXTS))]
    assert [r["ref"] for r in rows] == TEXTS  # lower-case transcripts normalised
    assert {"hyp", "cer", "wer"} <= set(rows[0])


def test_judge_cli_skips_bad_audio_and_reports_it(tmp_path: Path, corpus: Path, judge_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    utts = read_jsonl_manifest(corpus / "manifest.jsonl")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    utts[1].audio = str(broken)
    data = tmp_path / "data"
    write_jsonl_manifest(utts, data / "manifest.jsonl")
    out = tmp_path / "hyp.jsonl"
    assert main(["judge", "--model", str(judge_file), "--data", str(data), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out.strip().splitlines()[-1])
    assert scores["num_bad"] == 1 and scores["num_utts"] == len(TEXTS) - 1
    assert "utt01" in captured.err
    assert (tmp_path / "hyp.jsonl.bad_utts.txt").read_text().startswith("utt01 ")
    assert "utt01" not in out.read_text()


def test_judge_cli_missing_transcript_names_utterance_and_file(tmp_path: Path, corpus: Path, judge_file: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    utts = read_jsonl_manifest(corpus / "manifest.jsonl")
    utts[2].text = None
    data = tmp_path / "data"
    write_jsonl_manifest(utts, data / "manifest.jsonl")
    assert main(["judge", "--model", str(judge_file), "--data", str(data), "--out", str(tmp_path / "h.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "utt02" in err and str(data / "manifest.jsonl") in err
    from speechunits.asr.data import read_transcribed

    with pytest.raises(ManifestError, match="utt02"):
        read_transcribed(data)


def test_judge_cli_truncated_model_is_a_clear_error(tmp_path: Path, corpus: Path, judge_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "judge.pt"
    cut.write_bytes(judge_file.read_bytes()[:1000])
    assert main(["judge", "--model", str(cut), "--data", str(corpus), "--out", str(tmp_path / "h.jsonl")]) == 2
    assert str(cut) in capsys.readouterr().err


def test_transcribe_api_on_tone_audio(judge_file: Path) -> None:
    judge = load_judge(judge_file)
    assert judge.sample_rate == 16000
    hyps = judge.transcribe([tone_wave(t, seed=i) for i, t in enumerate(TEXTS[:3])], SR, beam=2)
    assert hyps == TEXTS[:3]
