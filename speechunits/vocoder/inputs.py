"""What a vocoder reads: :class:`VocoderInputs`, a padded batch, and its collation.

Every time axis is padded to the longest item; ``lengths`` counts the valid generator (mel)
frames of each item. Unit-rate axes (``unit_ids``, ``unit_vectors``, ``unit_silence``) have
``lengths // upsample`` valid frames (``upsample = unit_hop // mel.hop_length``). Padding
values: log-mel frames hold :data:`~speechunits.features.mel.SILENCE_LOG_MEL` (what silence
is), unit ids the silence id, segment vectors 0 with ``unit_silence`` True, F0 and voicing 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from speechunits.errors import InternalError
from speechunits.features.mel import SILENCE_LOG_MEL


@dataclass
class VocoderInputs:
    """A batch of vocoder conditioning; see the module docstring for shapes and padding."""

    lengths: Tensor
    mel: Tensor | None = None
    unit_ids: Tensor | None = None
    unit_vectors: Tensor | None = None
    unit_silence: Tensor | None = None
    log_f0: Tensor | None = None
    voiced: Tensor | None = None
    speaker: Tensor | None = None

    def to(self, device: torch.device | str) -> VocoderInputs:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if getattr(self, f.name) is not None})

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    def max_frames(self) -> int:
        return int(self.lengths.max()) if self.lengths.numel() else 0

    def select(self, index: Sequence[int] | Tensor) -> VocoderInputs:
        """The items ``index`` (batch axis), padding kept."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)
                                if getattr(self, f.name) is not None})


def _pad_stack(tensors: list[Tensor], value: float | int | bool, axis: int) -> Tensor:
    """Stack tensors that differ only in ``axis`` (per-item, no batch dim), padding with ``value``."""
    size = max(t.shape[axis] for t in tensors)
    out = []
    for t in tensors:
        missing = size - t.shape[axis]
        if missing:
            shape = list(t.shape)
            shape[axis] = missing
            t = torch.cat([t, torch.full(shape, value, dtype=t.dtype)], dim=axis)
        out.append(t)
    return torch.stack(out)


def collate_inputs(items: Sequence[VocoderInputs], silence_id: int | None = None) -> VocoderInputs:
    """Join single-item batches (batch size 1 each) into one padded batch.

    ``silence_id`` pads ``unit_ids`` (required when they are present).
    """
    if not items:
        raise InternalError(None, "collate_inputs: no items")
    present = {f.name for f in fields(VocoderInputs) if getattr(items[0], f.name) is not None}
    for it in items:
        if it.batch_size != 1:
            raise InternalError(None, f"collate_inputs: items must hold one utterance, got {it.batch_size}")
        have = {f.name for f in fields(VocoderInputs) if getattr(it, f.name) is not None}
        if have != present:
            raise InternalError(None, f"collate_inputs: items with different fields {sorted(have ^ present)}")
    out: dict[str, Tensor] = {"lengths": torch.cat([it.lengths for it in items])}
    if "mel" in present:
        out["mel"] = _pad_stack([it.mel[0] for it in items], SILENCE_LOG_MEL, axis=1)
    if "unit_ids" in present:
        if silence_id is None:
            raise InternalError(None, "collate_inputs: unit_ids need a silence_id to pad with")
        out["unit_ids"] = _pad_stack([it.unit_ids[0] for it in items], int(silence_id), axis=0)
    if "unit_vectors" in present:
        out["unit_vectors"] = _pad_stack([it.unit_vectors[0] for it in items], 0.0, axis=0)
    if "unit_silence" in present:
        out["unit_silence"] = _pad_stack([it.unit_silence[0] for it in items], True, axis=0)
    for name in ("log_f0", "voiced"):
        if name in present:
            out[name] = _pad_stack([getattr(it, name)[0] for it in items], 0.0, axis=0)
    if "speaker" in present:
        out["speaker"] = torch.cat([it.speaker for it in items])
    return VocoderInputs(**out)
