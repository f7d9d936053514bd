"""The ``speechunits`` command line: a thin dispatcher.

Each verb lives in its own module that defines ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their verb is used, so ``--help`` is
fast. Errors derived from :class:`speechunits.errors.SpeechUnitsError` are printed as one
line (``error: <file>:<line>: <problem>``) with exit status 2; so is an :class:`OSError` of a
full disk, an exceeded quota, a read-only file system or a refused permission that no writer
turned into an :class:`speechunits.errors.OutputError` (``error: <file>: no space left on
device (errno 28 ENOSPC); ...``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from speechunits import __version__
from speechunits.errors import OutputError, SpeechUnitsError

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth-corpus": ("speechunits.data.synth.synth_cli", "generate a Festival/espeak-ng synthetic corpus in a real layout"),
    "prepare-data": ("speechunits.data.prepare_cli", "make Kaldi data dirs + JSONL manifests from a corpus layout"),
    "combine-data": ("speechunits.data.combine_cli", "combine several data dirs / manifests into one"),
    "phonemize": ("speechunits.text.phonemize_cli", "phoneme (espeak-ng) or character symbols of every transcript, for TTS"),
    "extract-f0": ("speechunits.features.f0_cli", "F0 tracks (Praat autocorrelation) of a corpus, sharded and resumable"),
    "convert-manifest": ("speechunits.data.manifest_cli", "convert between Kaldi data dirs and JSONL manifests"),
    "validate-units": ("speechunits.units.validate_cli", "validate a unit set directory"),
    "merge-units": ("speechunits.units.merge_cli", "merge sharded units.JOB.jsonl files and validate"),
    "export": ("speechunits.units.export_cli", "export a unit set to kaldi/fairseq/textlesslib formats"),
    "import-units": ("speechunits.units.import_cli", "import fairseq/textlesslib unit lines into a unit set"),
    "segment": ("speechunits.sylber.segment_cli", "segment audio files into syllables with a Sylber model"),
    "bootstrap-segments": ("speechunits.sylber.bootstrap_cli", "syllable segments from the acoustic bootstrap segmenter"),
    "eval-boundaries": ("speechunits.eval.boundaries_cli", "boundary P/R/F1/R-value, token rate and purity"),
    "tune-segmentation": ("speechunits.sylber.tune_cli", "pick segmentation thresholds of a model on a labelled dev set"),
    "results-table": ("speechunits.eval.report_cli", "RESULTS.md table and plot from eval-boundaries reports"),
    "train-sylber": ("speechunits.sylber.train_cli", "train Sylber (stage 1 from given segments, stage 2 self-distillation)"),
    "train-hubert": ("speechunits.hubert.train_cli", "HuBERT-style masked-prediction pretraining (a self-supervised teacher for Sylber)"),
    "launch": ("speechunits.train.cluster", "start a training here, under torchrun, or as a Slurm job (multi-node, requeue)"),
    "tokenize": ("speechunits.tokenize.tokenize_cli", "tokenize a corpus into syllable units (sharded, resumable)"),
    "frame-units": ("speechunits.quantize.frame_units_cli", "k-means frame units (one encoder layer, or MFCC/log-mel, at 50 Hz) of a corpus, end to end"),
    "probe-phones": ("speechunits.quantize.phone_probe_cli", "phone purity, cluster purity and PNMI of k-means over each layer of each system"),
    "slu-cil": ("speechunits.slu.cil_cli", "class-incremental SLU: run one method (ft|er|er_kd|coconut|coconut_kd|joint) through all tasks"),
    "slu-select": ("speechunits.slu.select_cli", "class-incremental SLU: pick loss settings of a sweep on the valid split"),
    "slu-results": ("speechunits.slu.results_cli", "class-incremental SLU: compare runs, mean ± std over seeds (tables, figures)"),
    "cluster": ("speechunits.quantize.cluster_cli", "k-means codebook over segment (or frame) embeddings"),
    "quantize": ("speechunits.quantize.quantize_cli", "fill unit ids of a unit set from a k-means codebook"),
    "train-vocoder": ("speechunits.vocoder.train_cli", "train a unit-to-speech (or mel) vocoder: HiFi-GAN / iSTFT generators"),
    "synthesize": ("speechunits.vocoder.synthesize_cli", "synthesize audio from a unit set (or mel from a data dir) with a vocoder (sharded)"),
    "resynthesize": ("speechunits.unit2speech.resynthesize_cli", "audio -> units -> audio with a vocoder, with a spectrogram plot"),
    "evaluate-synthesis": ("speechunits.unit2speech.evaluate_cli", "score synthesized speech: MCD, F0, STOI, judge CER/WER, unit re-recognition"),
    "synthesis-results": ("speechunits.unit2speech.results_cli", "unit-to-speech RESULTS.md table and spectrogram figure"),
    "train-judge": ("speechunits.asr.train_cli", "train the CTC character recognizer that judges synthesized speech"),
    "judge": ("speechunits.asr.judge_cli", "transcribe a data dir with the judge and print/write CER/WER"),
    "train-tts": ("speechunits.tts.train_cli", "train Capacitron TTS (Tacotron2 + capacity-constrained variational prosody)"),
    "tts-synthesize": ("speechunits.text2speech.synthesize_cli", "synthesize speech with a TTS model: prior samples, prosody and style transfer"),
    "tts-evaluate": ("speechunits.text2speech.evaluate_cli", "score a TTS synthesis output dir: MCD, FFE, prosody transfer, diversity, attention, CER"),
    "tts-results": ("speechunits.text2speech.results_cli", "TTS RESULTS.md tables (models, diversity vs temperature) and figures"),
    "lm-pack": ("speechunits.lm.pack_cli", "pack a quantized unit set into LM tokens (dedup, optional BPE)"),
    "train-lm": ("speechunits.lm.train_cli", "train a unit language model (decoder-only Transformer) on a packed token set"),
    "lm-ngram": ("speechunits.lm.ngram_cli", "fit an interpolated Kneser-Ney n-gram LM on a packed token set"),
    "lm-score": ("speechunits.lm.score_cli", "log-probabilities of a packed token set under a unit LM (Transformer or n-gram)"),
    "lm-probe": ("speechunits.lm.probe_cli", "minimal-pair accuracy (ZeroSpeech 2021 lexical/syntactic) of LM scores"),
    "lm-continue": ("speechunits.lm.continue_cli", "spoken continuation: sample LM continuations of unit prompts into a unit set"),
    "lm-results": ("speechunits.lm.results_cli", "RESULTS.md table of lm/run.sh over tokenizers"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb (verb modules imported lazily)."""
    parser = argparse.ArgumentParser(prog="speechunits", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"speechunits {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``speechunits`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"speechunits {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except SpeechUnitsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable output not caught where it was written
        out_err = OutputError.from_os_error(err)
        if out_err is None:
            raise
        print(f"error: {out_err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
