"""Signal features shared by the components: log-mel spectrograms, F0 (Praat via parselmouth), Griffin-Lim."""
