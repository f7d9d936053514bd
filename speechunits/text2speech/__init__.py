"""Text to speech end to end: a TTS model with a vocoder (or Griffin-Lim), sharded synthesis to audio files."""
