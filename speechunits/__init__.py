"""speechunits: speech tokenization (Sylber syllable units), unit-to-speech, Capacitron TTS and
class-incremental spoken language understanding (COCONUT), sharing one unit-token format."""

from speechunits.numba_cache import configure_numba_cache

__version__ = "0.1.0"

configure_numba_cache()  # before any kernel module imports numba: its cache goes to a user directory
