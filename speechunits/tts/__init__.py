"""Capacitron TTS: Tacotron2 with capacity-constrained variational prosody (see docs/tts.md)."""

from speechunits.tts.config import ProsodyConfig, TacotronConfig, TTSConfig
from speechunits.tts.model_io import TTSModelInfo, load_tts, save_tts
from speechunits.tts.tacotron import Capacitron

__all__ = ["Capacitron", "ProsodyConfig", "TTSConfig", "TTSModelInfo", "TacotronConfig", "load_tts", "save_tts"]
