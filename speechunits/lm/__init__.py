"""Unit language models: packed token data, a decoder-only Transformer, scoring, sampling, n-grams."""
