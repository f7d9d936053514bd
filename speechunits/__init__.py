"""speechunits: speech tokenization (Sylber syllable units), unit-to-speech, Capacitron TTS and
class-incremental spoken language understanding (COCONUT), sharing one unit-token format."""

__version__ = "0.1.0"
