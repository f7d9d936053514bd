"""Text to speech end to end, on floor 7 because it joins components: ``tts-synthesize`` (a ``tts``
model with a ``vocoder`` mel vocoder or Griffin-Lim, sharded to audio files), ``tts-evaluate``
(the ``asr`` judge and the ``eval`` metrics over a synthesis output directory) and
``tts-results`` (tables and figures). See docs/tts.md."""

from speechunits.text2speech.evaluate import evaluate_tts, write_report
from speechunits.text2speech.labels import ProsodyLabel, read_prosody_labels
from speechunits.text2speech.synth_dir import SynthRow, read_synth_manifest, read_synth_meta

__all__ = ["ProsodyLabel", "SynthRow", "evaluate_tts", "read_prosody_labels", "read_synth_manifest", "read_synth_meta",
           "write_report"]
