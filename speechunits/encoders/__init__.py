"""General speech encoders: the HuBERT/wav2vec2-shaped model, its checkpoint loading, the one batched inference path.

Sylber, frame units, tokenization and the wav2vec2 SLU encoder all stand on this package;
it imports nothing from them. Exports are lazy so importing the package does not pull in
torchaudio.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "BatchEncoder": "speechunits.encoders.batch",
    "EncodeFailure": "speechunits.encoders.batch",
    "Encoded": "speechunits.encoders.batch",
    "EncodedBatch": "speechunits.encoders.batch",
    "EncoderConfig": "speechunits.encoders.model",
    "SpeechEncoder": "speechunits.encoders.model",
    "conv_output_lengths": "speechunits.encoders.model",
    "load_encoder": "speechunits.encoders.checkpoints",
    "save_encoder": "speechunits.encoders.checkpoints",
    "segmentation_defaults": "speechunits.encoders.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'speechunits.encoders' has no attribute {name!r}")
