"""``speechunits resynthesize``: audio -> units -> audio, with a side-by-side spectrogram plot.

Examples::

    # syllable tokens (cluster ids): Sylber model + the codebook the vocoder's units were quantized with
    speechunits resynthesize --model exp/u2s/vocoder_syllables/vocoder.pt \\
        --tokenizer exp/sylber/stage2/model.pt --codebook exp/sylber/kmeans500.pt a.flac b.wav --out resynth/ --plot
    # frame units: encoder checkpoint, layer and codebook
    speechunits resynthesize --model voc_frames.pt --tokenizer model.pt --layer 6 --codebook km100.pt a.flac --out r/
    # mel vocoder: analysis-synthesis, no tokenizer
    speechunits resynthesize --model voc_mel.pt a.flac --out r/

Writes ``OUT/<name>.flac`` per input (and ``OUT/<name>.png`` with ``--plot``: the original's
and the resynthesis' log-mel spectrograms, one above the other). ``--durations predicted``
ignores the tokenizer's durations and uses the vocoder's duration predictor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.audio import load_audio, write_audio
from speechunits.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", type=Path, help="audio files to resynthesize")
    parser.add_argument("--model", required=True, type=Path, help="vocoder checkpoint (vocoder.pt from train-vocoder)")
    parser.add_argument("--tokenizer", type=Path, help="Sylber model (syllable vocoders) or encoder (frame units)")
    parser.add_argument("--codebook", type=Path, help="k-means codebook of the vocoder's unit ids")
    parser.add_argument("--layer", type=int, help="encoder layer of frame units (1-based)")
    parser.add_argument("--durations", choices=("stored", "predicted"), default="stored",
                        help="token durations from the tokenizer, or from the duration predictor (default stored)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--plot", action="store_true", help="also write a spectrogram comparison per file")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")


def _tokenizer(args: argparse.Namespace, kind: str, source: str):  # noqa: ANN202 - one of two classes
    from speechunits.unit2speech.tokenizers import FrameUnitTokenizer, SyllableTokenizer

    if args.tokenizer is None:
        raise ConfigError(args.model, f"a vocoder over {kind} needs --tokenizer")
    if kind == "syllables":
        if source == "cluster" and args.codebook is None:
            raise ConfigError(args.model, "this vocoder reads syllable cluster ids: give the --codebook they came from")
        return SyllableTokenizer(args.tokenizer, args.codebook if source == "cluster" else None, device=args.device)
    if args.codebook is None or args.layer is None:
        raise ConfigError(args.model, "a frame-unit vocoder needs --codebook and --layer")
    return FrameUnitTokenizer(args.tokenizer, args.codebook, args.layer, device=args.device)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from speechunits.features.mel import LogMel
    from speechunits.vocoder.inputs import VocoderInputs
    from speechunits.vocoder.model import load_vocoder
    from speechunits.vocoder.synthesis import inputs_from_record, synthesize_inputs

    model = load_vocoder(args.model).eval()
    cfg = model.cfg
    args.out.mkdir(parents=True, exist_ok=True)
    sample_rate = cfg.mel.sample_rate
    if cfg.input == "mel":
        mel = LogMel(cfg.mel)
        items = []
        for path in args.audio:
            wave = torch.from_numpy(load_audio(path, sample_rate))
            with torch.no_grad():
                m = mel(wave[None])
            items.append((path, VocoderInputs(lengths=torch.tensor([m.shape[-1]]), mel=m)))
    else:
        tokenizer = _tokenizer(args, cfg.input, cfg.syllable_source)
        items = [(path, inputs_from_record(tok.record, tokenizer.meta, cfg, embeddings=tok.embeddings,
                                           predict_durations=args.durations == "predicted", model=model))
                 for path, tok in zip(args.audio, tokenizer(args.audio))]
    for path, x in items:
        wave = synthesize_inputs(model, x)
        out = args.out / f"{path.stem}.flac"
        write_audio(out, np.clip(wave, -1.0, 1.0), sample_rate)
        line = f"resynthesize: {path} -> {out} ({len(wave) / sample_rate:.2f} s)"
        if args.plot:
            from speechunits.features.spectrogram_plot import plot_spectrograms

            png = plot_spectrograms([("original", path), (f"{cfg.input} resynthesis", out)], args.out / f"{path.stem}.png",
                                    sample_rate=sample_rate, title=path.name)
            line += f", plot {png}"
        print(line, file=sys.stderr)
    return 0
