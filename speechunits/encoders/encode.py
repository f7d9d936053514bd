"""Run an encoder on one padded batch and hand the features back to numpy."""

from __future__ import annotations

import numpy as np
import torch

from speechunits.device import inference_context
from speechunits.encoders.model import SpeechEncoder


def encode_padded(
    model: SpeechEncoder,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    device: torch.device,
    *,
    layer: int | None = None,
    autocast: bool = True,
) -> tuple[np.ndarray, list[int]]:
    """Padded ``(B, T, D)`` float32 features on the CPU and each row's frame count.

    ``layer`` (1-based) takes that transformer layer's output instead of the last one. A
    batch shorter than the receptive field is zero-padded so the conv stack runs; rows
    shorter than it get 0 frames.
    """
    need = model.receptive_field
    if waveforms.shape[1] < need:  # a batch of very short utterances
        waveforms = torch.nn.functional.pad(waveforms, (0, need - waveforms.shape[1]))
    x = waveforms.to(device, non_blocking=True)
    lens = lengths.to(device, non_blocking=True)
    with inference_context(device, autocast=autocast):
        if layer is None:
            feats, frame_lengths = model(x, lens)
        else:
            layers, frame_lengths = model.extract_features(x, lens, num_layers=layer)
            feats = layers[layer - 1]
    return feats.float().cpu().numpy(), [int(n) for n in frame_lengths.cpu().tolist()]
