"""COCONUT class-incremental spoken language understanding (Cappellazzo et al., ACL Findings 2024).

Modules: ``tokenizer`` (BPE targets ``<intent> _SEP <transcript>``), ``data`` (corpora ->
SLU examples, padding collate), ``encoders`` (log-mel conformer, wav2vec2/HuBERT, unit
tokens), ``model`` (encoder + pre-LN Transformer decoder, greedy/beam decoding),
``tasks`` (class-incremental splits), ``memory`` (rehearsal buffer, iCaRL herding),
``losses`` (NSPT, multimodal supervised InfoNCE, projection heads, seq-KD targets) and
``metrics`` (accuracy matrix, AIA, BWT, forgetting, WER, tables and plots).
See docs/slu.md.
"""
