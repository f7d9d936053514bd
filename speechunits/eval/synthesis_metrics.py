"""The synthesis metrics in one place (see docs/metrics.md): MCD, F0 errors and FFE, STOI, unit edit
distance, CER/WER, and the prosody and attention metrics of TTS."""

from speechunits.eval.aligned import dtw_scores
from speechunits.eval.attention_metrics import attention_failure, diagonality, focus_rate
from speechunits.eval.error_rates import error_rates
from speechunits.eval.f0_metrics import f0_errors, f0_frame_error
from speechunits.eval.intelligibility import stoi_score, unit_edit_distance
from speechunits.eval.mcd import mcd_dtw, mel_cepstrum
from speechunits.eval.prosody_metrics import bootstrap_pearson, pearson, spread_across_seeds, utterance_prosody

__all__ = ["attention_failure", "bootstrap_pearson", "diagonality", "dtw_scores", "error_rates", "f0_errors",
           "f0_frame_error", "focus_rate", "mcd_dtw", "mel_cepstrum", "pearson", "spread_across_seeds", "stoi_score",
           "unit_edit_distance", "utterance_prosody"]
