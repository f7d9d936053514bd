"""``speechunits lm-pack``: a quantized unit set -> a packed token set for the unit LM.

Example::

    speechunits lm-pack --units exp/units/train_km --out exp/lm/data/train --dedup true --bpe-vocab 2000
    speechunits lm-pack --units exp/units/dev_km --out exp/lm/data/dev --dedup true \\
        --bpe-model exp/lm/data/train.bpe.model

With ``--bpe-vocab N`` a BPE model of N tokens is trained on this set first
(``PREFIX.bpe.model``); dev and test sets reuse the train set's model with ``--bpe-model``.
The producer block in ``PREFIX.json`` (see :mod:`speechunits.lm.tokens`) also records the
sha256 of the source ``units.jsonl``; a rerun whose producer equals the stored one is skipped,
so the stage is resumable and idempotent (``--force`` redoes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import CheckpointError, ConfigError, UnitFormatError
from speechunits.io_utils import sha256_file
from speechunits.lm.bpe import UnitBPE, train_bpe
from speechunits.lm.packed import PackedTokens, packed_files, write_packed
from speechunits.lm.tokens import unit_sequences, unit_set_hash
from speechunits.units import UnitSetMeta, read_meta
from speechunits.units.meta import UNITS_NAME


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, found {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, type=Path, help="quantized unit set directory")
    parser.add_argument("--out", required=True, type=Path, help="output prefix (writes PREFIX.bin/.idx/.items.tsv/.json)")
    parser.add_argument("--dedup", type=_bool, default=True,
                        help="true: merge repeated ids (frame sets as stored); false: one id per frame for frame "
                             "sets, tokens as stored otherwise (default true)")
    bpe = parser.add_mutually_exclusive_group()
    bpe.add_argument("--bpe-vocab", type=int, default=None, help="train a BPE model of N tokens on this set first")
    bpe.add_argument("--bpe-model", type=Path, default=None, help="encode with this BPE model (the train set's)")
    parser.add_argument("--force", action="store_true", help="repack even if the packed set is up to date")


def producer_block(unit_dir: Path, meta: UnitSetMeta, dedup: bool, bpe: UnitBPE | None,
                   units_sha256: str) -> dict[str, Any]:
    """The producer block of a packed set made from ``unit_dir`` (see :mod:`speechunits.lm.tokens`)."""
    return {"unit_set": str(unit_dir), "unit_set_hash": unit_set_hash(meta), "kind": meta.kind,
            "frame_rate_hz": meta.frame_rate_hz, "dedup": bool(dedup),
            "bpe": None if bpe is None else {"model": str(bpe.path), "sha256": bpe.sha256, "vocab_size": bpe.vocab_size},
            "unit_vocab_size": int(meta.vocab_size or 0), "units_sha256": units_sha256}


def _up_to_date(prefix: Path, producer: dict[str, Any]) -> bool:
    if not packed_files(prefix)["json"].is_file():
        return False
    try:
        return PackedTokens(prefix).producer == producer
    except (UnitFormatError, KeyError, ValueError):
        return False


def _summary(prefix: Path, header: dict[str, Any], skipped: bool) -> str:
    seconds = float(header["audio_seconds"])
    rate = header["num_tokens"] / seconds if seconds > 0 else float("nan")
    state = "up to date" if skipped else "wrote"
    return (f"lm-pack: {state} {prefix}: {header['num_sequences']} sequences, {header['num_tokens']} tokens, "
            f"{rate:.2f} tokens/s of audio, vocab {header['vocab_size']}")


def run(args: argparse.Namespace) -> int:
    meta = read_meta(args.units)
    unit_set_hash(meta)  # an unquantized set fails here, naming the directory
    units_sha = sha256_file(args.units / UNITS_NAME)
    prefix: Path = args.out
    bpe: UnitBPE | None = UnitBPE(args.bpe_model) if args.bpe_model is not None else None
    if args.bpe_vocab is not None and Path(f"{prefix}.bpe.model").is_file():
        try:  # a previous run's model: it counts only when everything else matches, else it is retrained
            bpe = UnitBPE(f"{prefix}.bpe.model")
        except CheckpointError:
            bpe = None
    if not args.force and (args.bpe_vocab is None or (bpe is not None and bpe.vocab_size == args.bpe_vocab)) \
            and _up_to_date(prefix, producer_block(args.units, meta, args.dedup, bpe, units_sha)):
        print(_summary(prefix, PackedTokens(prefix).header, True))
        return 0
    ids: list[str] = []
    seqs: list[np.ndarray] = []
    seconds: list[float] = []
    for utt, seq, secs in unit_sequences(args.units, dedup=args.dedup):
        ids.append(utt)
        seqs.append(seq)
        seconds.append(secs)
    if args.bpe_vocab is not None:
        bpe = train_bpe(seqs, args.bpe_vocab, f"{prefix}.bpe", unit_vocab_size=meta.vocab_size)
    if bpe is not None:
        if meta.vocab_size != bpe.unit_vocab_size:
            raise ConfigError(bpe.path, f"the BPE model covers {bpe.unit_vocab_size} unit ids but {args.units} has "
                                        f"vocab_size {meta.vocab_size}: it was trained on another unit set")
        seqs = [bpe.encode(s) for s in seqs]
    vocab = bpe.vocab_size if bpe is not None else int(meta.vocab_size or 0)
    header = write_packed(prefix, ids, seqs, seconds, vocab_size=vocab,
                          producer=producer_block(args.units, meta, args.dedup, bpe, units_sha))
    print(_summary(prefix, header, False), file=sys.stdout)
    return 0
