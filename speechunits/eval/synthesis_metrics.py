"""The synthesis metrics in one place (see docs/metrics.md): MCD, F0 errors, STOI, unit edit distance, CER/WER."""

from speechunits.eval.error_rates import error_rates
from speechunits.eval.f0_metrics import f0_errors
from speechunits.eval.intelligibility import stoi_score, unit_edit_distance
from speechunits.eval.mcd import mcd_dtw, mel_cepstrum

__all__ = ["error_rates", "f0_errors", "mcd_dtw", "mel_cepstrum", "stoi_score", "unit_edit_distance"]
