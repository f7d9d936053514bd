"""Inference of a trained SLU model on a list of examples: decoding, pooled encoder
features, and the scores of one evaluation (:func:`evaluate`).

Examples are processed in batches of similar length (fewer padded frames) and the results
are put back in the order of the input, so callers index them like the examples.
Decoding is batched greedy search when ``decode.beam_size == 1`` and beam search
otherwise. The predicted intent is the text before the first ``_SEP``
(:meth:`~speechunits.slu.tokenizer.SLUTokenizer.parse_intent`); the WER is over the
transcript part only, against the normalised reference.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from speechunits.slu import metrics as M
from speechunits.slu.config import DecodeConfig
from speechunits.slu.data import SLUExample
from speechunits.slu.model import SLUModel
from speechunits.slu.tasks import ClassIncrementalSplit
from speechunits.slu.slurp_f1 import parse_annotation, slu_f1
from speechunits.slu.tokenizer import SLUTokenizer, normalize_transcript
from speechunits.slu.inputs import InputSource


def _batches_by_length(
    examples: Sequence[SLUExample], audio: InputSource, batch_size: int, device: torch.device, desc: str | None = None
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Batches of similar-length examples: their indices into ``examples`` and their padded
    encoder inputs (:meth:`InputSource.pad`) and lengths on ``device``; a progress bar named ``desc`` when given."""
    order = sorted(range(len(examples)), key=lambda i: (audio.length(examples[i]), examples[i].id))
    starts: Iterable[int] = range(0, len(order), batch_size)
    if desc is not None:
        starts = tqdm(starts, desc=desc, unit="batch", file=sys.stderr, disable=len(order) <= batch_size or None)
    for start in starts:
        idx = order[start : start + batch_size]
        wav, lens = audio.pad([examples[i] for i in idx])
        yield idx, wav.to(device), lens.to(device)


@torch.no_grad()
def decode_examples(
    model: SLUModel, examples: Sequence[SLUExample], audio: InputSource, decode: DecodeConfig, device: torch.device, desc: str = "decode"
) -> list[list[int]]:
    """Hypotheses (ids, no bos/eos) in the order of ``examples``; batches of similar length."""
    hyps: list[list[int]] = [[] for _ in examples]
    model.eval()
    for idx, wav, lens in _batches_by_length(examples, audio, decode.batch_size, device, desc):
        if decode.beam_size == 1:
            out = model.greedy_decode(wav, lens, max_len=decode.max_len)
        else:
            out = model.beam_search(wav, lens, beam_size=decode.beam_size, max_len=decode.max_len, length_penalty=decode.length_penalty)
        for i, h in zip(idx, out):
            hyps[i] = h
    return hyps


@torch.no_grad()
def pooled_features(model: SLUModel, examples: Sequence[SLUExample], audio: InputSource, batch_size: int, device: torch.device) -> np.ndarray:
    """Mean-pooled encoder outputs (N, d_model) in the order of ``examples`` (herding features)."""
    feats = np.zeros((len(examples), model.d_model), dtype=np.float32)
    model.eval()
    for idx, wav, lens in _batches_by_length(examples, audio, batch_size, device):
        feats[idx] = model.pooled_audio(wav, lens).float().cpu().numpy()
    return feats


def evaluate(
    model: SLUModel,
    examples: Sequence[SLUExample],
    tokenizer: SLUTokenizer,
    split: ClassIncrementalSplit,
    audio: InputSource,
    decode: DecodeConfig,
    device: torch.device,
    desc: str = "eval",
    entities: bool = False,
) -> dict[str, Any]:
    """Accuracy row over all tasks (NaN for tasks without examples), intent accuracy, WER of
    the words (entity markup removed); with ``entities`` (SLURP ``targets: entities``) also
    SLU-F1 and span-F1 of the ``[type : filler]`` entities (:mod:`speechunits.slu.slurp_f1`)."""
    if not examples:
        return {"row": [math.nan] * split.num_tasks, "accuracy": math.nan, "wer": math.nan, "num": 0, "sizes": [0] * split.num_tasks}
    hyps = decode_examples(model, examples, audio, decode, device, desc=desc)
    preds = [tokenizer.parse_intent(h) for h in hyps]
    refs = [ex.label for ex in examples]
    c2t = split.class_to_task()
    sizes = [0] * split.num_tasks
    for r in refs:
        sizes[c2t[r]] += 1
    ref_texts = [parse_annotation(normalize_transcript(ex.transcript)) for ex in examples]
    hyp_texts = [parse_annotation(tokenizer.decode_transcript(h)) for h in hyps]
    scores = {}
    if entities:
        scores = {k: v for k, v in slu_f1([r[1] for r in ref_texts], [h[1] for h in hyp_texts]).items()
                  if k in ("slu_f1", "span_f1")}
    return {
        "row": M.accuracy_row(preds, refs, c2t, split.num_tasks),
        "sizes": sizes,
        "accuracy": M.intent_accuracy(preds, refs),
        "wer": M.word_error_rate([r[0] for r in ref_texts], [h[0] for h in hyp_texts]),
        **scores,
        "num": len(examples),
        "examples": [{"id": ex.id, "ref": ex.label, "pred": p, "hyp": tokenizer.decode(h)} for ex, p, h in zip(examples[:20], preds, hyps)],
    }
