"""General speech encoders: the HuBERT/wav2vec2-shaped model, its checkpoint loading, batch encoding.

Sylber, frame units, tokenization and the wav2vec2 SLU encoder all stand on this package;
it imports nothing from them (``docs/architecture.md``).
"""

from speechunits.encoders.checkpoints import load_encoder, save_encoder, segmentation_defaults
from speechunits.encoders.model import EncoderConfig, SpeechEncoder, conv_output_lengths

__all__ = ["EncoderConfig", "SpeechEncoder", "conv_output_lengths", "load_encoder", "save_encoder",
           "segmentation_defaults"]
