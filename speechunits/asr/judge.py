"""The trained judge for inference: ``judge.pt`` (format ``speechunits.asr-judge/1``),
:func:`save_judge`, :func:`load_judge` and :class:`Judge`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.data.batching import pack_by_frames
from speechunits.asr.decode import ctc_decode
from speechunits.asr.fbank import FbankConfig, log_fbank, pad_features
from speechunits.asr.model import CTCJudgeModel, JudgeModelConfig
from speechunits.asr.vocab import CharVocab
from speechunits.errors import CheckpointError, ConfigError
from speechunits.train.checkpoint import load_torch_file, save_torch_file

FORMAT = "speechunits.asr-judge/1"
REQUIRED = ("format", "model_config", "fbank_config", "vocab", "state_dict")


def save_judge(path: str | os.PathLike[str], model: CTCJudgeModel, vocab: CharVocab, fbank: FbankConfig,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write the inference checkpoint atomically (fsynced, renamed)."""
    path = Path(path)
    state = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "fbank_config": fbank.to_dict(),
        "vocab": vocab.to_list(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    return save_torch_file(path, state)


class Judge:
    """A CTC character recognizer that transcribes waveforms (only to score synthesized audio)."""

    def __init__(self, model: CTCJudgeModel, vocab: CharVocab, fbank: FbankConfig,
                 device: str | torch.device = "cpu", max_frames: int = 40000) -> None:
        self.model = model.to(device).eval()
        self.vocab = vocab
        self.fbank = fbank
        self.device = torch.device(device)
        self.max_frames = int(max_frames)
        self.extra: dict[str, Any] = {}

    @property
    def sample_rate(self) -> int:
        return self.fbank.sample_rate

    @torch.no_grad()
    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int, beam: int = 1) -> list[str]:
        """Upper-case transcripts of mono waveforms at ``sample_rate`` (resampled as needed);
        greedy decoding for ``beam <= 1``, else a CTC prefix beam search of that width."""
        feats = [log_fbank(w, sample_rate, self.fbank) for w in waves]
        return self.transcribe_features(feats, beam)

    @torch.no_grad()
    def transcribe_features(self, feats: Sequence[torch.Tensor], beam: int = 1) -> list[str]:
        """Transcripts of normalised fbank matrices (:func:`speechunits.asr.fbank.log_fbank`)."""
        if not feats:
            return []
        lengths = [int(f.size(0)) for f in feats]
        order = sorted(range(len(feats)), key=lambda i: lengths[i])
        out: list[str] = [""] * len(feats)
        for batch in pack_by_frames(order, lengths, self.max_frames):
            x, lens = pad_features([feats[i] for i in batch])
            log_probs, out_lens = self.model(x.to(self.device), lens.to(self.device))
            log_probs, out_lens = log_probs.cpu(), out_lens.cpu()
            for row, i in enumerate(batch):
                out[i] = self.vocab.decode(ctc_decode(log_probs[row, : int(out_lens[row])], beam))
        return out


def load_judge(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Judge:
    """Load ``judge.pt``; CheckpointError naming the file when it is missing, truncated,
    foreign or does not fit the model it describes."""
    path = Path(path)
    state = load_torch_file(path, (FORMAT,), "judge checkpoint")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(path, f"judge checkpoint lacks {missing}")
    vocab = CharVocab.from_list(state["vocab"], str(path))
    try:
        cfg = JudgeModelConfig.from_dict(state["model_config"])
        fbank = FbankConfig.from_dict(state["fbank_config"])
    except ConfigError as err:
        raise CheckpointError(path, f"bad stored config: {err.problem}") from err
    if cfg.vocab_size != len(vocab):
        raise CheckpointError(path, f"model has {cfg.vocab_size} outputs but the vocabulary {len(vocab)}")
    model = CTCJudgeModel(cfg)
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(path, f"weights do not fit the stored config: {err}") from err
    judge = Judge(model, vocab, fbank, device=device)
    judge.extra = dict(state.get("extra") or {})
    return judge
