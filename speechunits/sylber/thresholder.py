"""Adaptive norm threshold for online segmentation (Sylber stage 2).

Frame-feature norms of speech and non-speech are each modelled by a running Gaussian
(exponential moving averages of mean and variance). The speech/non-speech decision
threshold is the point between the two means where the two weighted densities cross.
With the reference's starting statistics (speech 6.10 / var 0.87, non-speech 0.34 /
var 0.34) the crossing point is about 2.6, the default fixed threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

REFERENCE_START = {"speech_mean": 6.10, "speech_var": 0.87, "silence_mean": 0.34, "silence_var": 0.34}


def gaussian_crossing(mu_s: float, var_s: float, mu_n: float, var_n: float, prior_ratio: float = 1.0) -> float:
    """x between the means where ``N(x; mu_n, var_n) * prior_ratio == N(x; mu_s, var_s)``.

    Falls back to the midpoint of the means when the densities do not cross between them.
    """
    var_s, var_n = max(var_s, 1e-8), max(var_n, 1e-8)
    # log N_s(x) - log N_n(x) - log(prior_ratio) = 0  ->  a x^2 + b x + c = 0
    a = 1.0 / (2 * var_n) - 1.0 / (2 * var_s)
    b = mu_s / var_s - mu_n / var_n
    c = (mu_n**2) / (2 * var_n) - (mu_s**2) / (2 * var_s) - 0.5 * math.log(var_s / var_n) - math.log(prior_ratio)
    lo, hi = sorted((mu_n, mu_s))
    if abs(a) < 1e-12:
        roots = [-c / b] if abs(b) > 1e-12 else []
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1.0, -1.0)]
    inside = [r for r in roots if lo <= r <= hi]
    if inside:
        return min(inside, key=lambda r: abs(r - 0.5 * (lo + hi)))
    return 0.5 * (lo + hi)


@dataclass
class AdaptiveNormThreshold:
    """Running speech/non-speech norm Gaussians; ``threshold`` is their crossing point.

    ``fixed`` pins the threshold (no adaptation). ``decay`` is the EMA decay per update.
    """

    speech_mean: float = REFERENCE_START["speech_mean"]
    speech_var: float = REFERENCE_START["speech_var"]
    silence_mean: float = REFERENCE_START["silence_mean"]
    silence_var: float = REFERENCE_START["silence_var"]
    decay: float = 0.9999
    prior_ratio: float = 1.0
    fixed: float | None = None

    @property
    def threshold(self) -> float:
        """The current norm threshold."""
        if self.fixed is not None:
            return float(self.fixed)
        return gaussian_crossing(self.speech_mean, self.speech_var, self.silence_mean, self.silence_var,
                                 self.prior_ratio)

    def _ema(self, mean: float, var: float, values: torch.Tensor) -> tuple[float, float]:
        d = self.decay
        new_mean = d * mean + (1 - d) * float(values.mean())
        new_var = d * var + (1 - d) * float(((values - new_mean) ** 2).mean())
        return new_mean, new_var

    def update(self, speech_norms: torch.Tensor | None, silence_norms: torch.Tensor | None) -> None:
        """Fold a batch of speech and/or non-speech frame norms into the running statistics."""
        if self.fixed is not None:
            return
        if speech_norms is not None and speech_norms.numel():
            self.speech_mean, self.speech_var = self._ema(self.speech_mean, self.speech_var,
                                                          speech_norms.detach().float())
        if silence_norms is not None and silence_norms.numel():
            self.silence_mean, self.silence_var = self._ema(self.silence_mean, self.silence_var,
                                                            silence_norms.detach().float())

    def update_from_moments(self, speech: tuple[float, float, float], silence: tuple[float, float, float]) -> None:
        """Update from (count, sum, sum of squares) of each class, e.g. all-reduced over ranks."""
        if self.fixed is not None:
            return
        d = self.decay
        for name, (n, s1, s2) in (("speech", speech), ("silence", silence)):
            if n <= 0:
                continue
            mean, var = getattr(self, f"{name}_mean"), getattr(self, f"{name}_var")
            batch_mean = s1 / n
            new_mean = d * mean + (1 - d) * batch_mean
            batch_sq_dev = s2 / n - 2 * new_mean * batch_mean + new_mean**2  # mean((x - new_mean)^2)
            setattr(self, f"{name}_mean", new_mean)
            setattr(self, f"{name}_var", d * var + (1 - d) * max(batch_sq_dev, 0.0))

    def update_from_features(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> float:
        """Split frame norms of (B, T, D) ``features`` at the current threshold, update, return it."""
        norms = features.detach().float().norm(dim=-1)
        if valid is not None:
            norms = norms[valid]
        thr = self.threshold
        self.update(norms[norms >= thr], norms[norms < thr])
        return thr

    def state_dict(self) -> dict[str, float | None]:
        """Everything needed to resume (saved in training checkpoints)."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        """Restore from :meth:`state_dict`."""
        for key, value in state.items():
            setattr(self, key, value)
