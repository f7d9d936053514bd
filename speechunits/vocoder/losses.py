"""GAN vocoder losses: least-squares adversarial, feature matching, mel L1, multi-resolution STFT.

Every function returns the *unweighted* term; the training task applies the weights. HiFi-GAN's
(Kong et al. 2020, Eq. 6-7) are :data:`HIFIGAN_LOSS_WEIGHTS`: generator loss =
``1 * adversarial + 2 * feature_matching + 45 * mel_l1``, where adversarial and feature matching
are summed over all sub-discriminators (and feature matching over their layers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

HIFIGAN_LOSS_WEIGHTS = {"adversarial": 1.0, "feature_matching": 2.0, "mel": 45.0}
"""lambda_adv, lambda_fm, lambda_mel of HiFi-GAN."""

STFT_LOSS_RESOLUTIONS = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512))
"""(n_fft, hop, win) of the Parallel WaveGAN auxiliary loss (at 22/24 kHz; scale for 16 kHz)."""


def lsgan_discriminator_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor]
                             ) -> tuple[Tensor, list[Tensor]]:
    """``sum_k mean((1 - D_k(x))^2) + mean(D_k(G(s))^2)`` and the per-sub-discriminator terms.

    Pass fake scores computed on a detached generator output.
    """
    if len(real_scores) != len(fake_scores) or not real_scores:
        raise ValueError(f"need as many real as fake scores (>0), got {len(real_scores)} and {len(fake_scores)}")
    per = [torch.mean((1.0 - r.float()) ** 2) + torch.mean(f.float() ** 2) for r, f in zip(real_scores, fake_scores)]
    return torch.stack(per).sum(), per


def lsgan_generator_loss(fake_scores: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``sum_k mean((1 - D_k(G(s)))^2)`` and the per-sub-discriminator terms."""
    if not fake_scores:
        raise ValueError("no discriminator scores")
    per = [torch.mean((1.0 - f.float()) ** 2) for f in fake_scores]
    return torch.stack(per).sum(), per


def feature_matching_loss(real_feats: Sequence[Sequence[Tensor]], fake_feats: Sequence[Sequence[Tensor]]) -> Tensor:
    """``sum_k sum_i mean|D_k^i(x) - D_k^i(G(s))|`` (HiFi-GAN Eq. 4, summed over sub-discriminators).

    The real features are detached (they are targets). Unweighted: HiFi-GAN multiplies it by 2
    (:data:`HIFIGAN_LOSS_WEIGHTS`). Zero when the features are equal.
    """
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real vs {len(fake_feats)} fake feature lists")
    terms = []
    for rs, fs in zip(real_feats, fake_feats):
        if len(rs) != len(fs):
            raise ValueError(f"{len(rs)} real vs {len(fs)} fake feature maps")
        terms += [torch.mean(torch.abs(r.detach().float() - f.float())) for r, f in zip(rs, fs)]
    return torch.stack(terms).sum()


def _flat(wave: Tensor) -> Tensor:
    """``[B, 1, T]``, ``[B, T]`` or ``[T]`` -> ``[B, T]``."""
    if wave.dim() == 3:
        return wave.squeeze(1)
    return wave if wave.dim() == 2 else wave.unsqueeze(0)


def _same_length(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    n = min(a.shape[-1], b.shape[-1])
    return a[..., :n], b[..., :n]


def mel_l1_loss(wave_hat: Tensor, wave: Tensor, log_mel: Callable[[Tensor], Tensor] | nn.Module) -> Tensor:
    """Mean absolute difference of ``log_mel(wave_hat)`` and ``log_mel(wave)`` (HiFi-GAN Eq. 3).

    ``log_mel`` maps ``[B, T]`` to ``[B, n_mels, F]`` (``speechunits.features.mel.LogMel``); both
    waves (``[B, 1, T]`` or ``[B, T]``) are cut to the shorter. Unweighted (HiFi-GAN: x45).
    """
    a, b = _same_length(_flat(wave_hat), _flat(wave))
    with torch.no_grad():
        target = log_mel(b.float())
    return nn.functional.l1_loss(log_mel(a.float()), target)


def _stft_magnitude(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    window = torch.hann_window(win, device=x.device, dtype=torch.float32)
    mode = "reflect" if n_fft // 2 < x.shape[-1] else "constant"
    x = nn.functional.pad(x.float().unsqueeze(1), (n_fft // 2, n_fft // 2), mode=mode).squeeze(1)
    spec = torch.stft(x, n_fft, hop, win, window, center=False, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7))


def multi_resolution_stft_loss(wave_hat: Tensor, wave: Tensor,
                               resolutions: Sequence[Sequence[int]] = STFT_LOSS_RESOLUTIONS,
                               return_terms: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Parallel WaveGAN's auxiliary loss, averaged over ``resolutions`` ``(n_fft, hop, win)``:
    spectral convergence ``||S - S_hat||_F / ||S||_F`` plus ``mean|log S - log S_hat|``.

    Returns their sum, or ``(spectral_convergence, log_magnitude)`` with ``return_terms``.
    """
    a, b = _same_length(_flat(wave_hat), _flat(wave))
    sc, mag = a.new_zeros((), dtype=torch.float32), a.new_zeros((), dtype=torch.float32)
    for n_fft, hop, win in resolutions:
        s_hat = _stft_magnitude(a, n_fft, hop, win)
        s = _stft_magnitude(b, n_fft, hop, win).detach()
        sc = sc + torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp_min(1e-7)
        mag = mag + nn.functional.l1_loss(torch.log(s_hat), torch.log(s))
    sc, mag = sc / len(resolutions), mag / len(resolutions)
    return (sc, mag) if return_terms else sc + mag
