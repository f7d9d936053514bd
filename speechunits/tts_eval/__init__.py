"""TTS evaluation: ``tts-evaluate`` scores a synthesis output directory (quality, prosody
transfer, diversity across seeds, attention failures, the judge's CER) and ``tts-results``
turns reports into tables and figures (docs/tts_evaluation.md). It stands on the ``tts``
component's output files, the ``asr`` judge and the ``eval`` metrics, so it is on floor 7."""

from speechunits.tts_eval.evaluate import evaluate_tts, write_report
from speechunits.tts_eval.labels import ProsodyLabel, read_prosody_labels
from speechunits.tts_eval.synth_dir import SynthRow, read_synth_manifest, read_synth_meta

__all__ = ["ProsodyLabel", "SynthRow", "evaluate_tts", "read_prosody_labels", "read_synth_manifest", "read_synth_meta",
           "write_report"]
