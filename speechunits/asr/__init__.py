"""A small CTC character recognizer: the intelligibility judge of synthesized speech.

Trained on the train split of the corpus whose synthesized audio it scores (docs/asr.md);
:func:`load_judge` gives a :class:`Judge` whose ``transcribe(waves, sample_rate, beam)``
returns upper-case transcripts.
"""

from speechunits.asr.decode import ctc_decode, greedy_decode, prefix_beam_search
from speechunits.asr.fbank import FbankConfig, log_fbank
from speechunits.asr.judge import FORMAT, Judge, load_judge, save_judge
from speechunits.asr.model import CTCJudgeModel, JudgeModelConfig
from speechunits.asr.vocab import CharVocab, normalize_text

__all__ = [
    "FORMAT",
    "CTCJudgeModel",
    "CharVocab",
    "FbankConfig",
    "Judge",
    "JudgeModelConfig",
    "ctc_decode",
    "greedy_decode",
    "load_judge",
    "log_fbank",
    "normalize_text",
    "prefix_beam_search",
    "save_judge",
]
