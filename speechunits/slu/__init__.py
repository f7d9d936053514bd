"""COCONUT class-incremental spoken language understanding (Cappellazzo et al., ACL Findings 2024).

Modules: ``tokenizer`` (BPE targets ``<intent> _SEP <transcript>``), ``data`` (corpora ->
SLU examples, padding collate), ``inputs`` (input sources: waveforms or unit sets), ``encoders`` (log-mel conformer, wav2vec2/HuBERT, unit
tokens), ``model`` (encoder + pre-LN Transformer decoder, greedy/beam decoding),
``tasks`` (class-incremental splits), ``memory`` (rehearsal buffer, iCaRL herding),
``losses`` (NSPT, multimodal supervised InfoNCE, projection heads, seq-KD targets),
``objective`` (the COCONUT loss of a batch), ``train_task`` (methods, the Trainer adapter)
and ``metrics`` (accuracy matrix, AIA, BWT, forgetting, WER, tables and plots).
The experiment: ``config`` (schema and validation), ``experiment`` (examples, class split,
tokenizer), ``evaluate`` (decoding and scoring), ``protocol`` (the task loop) and
``results`` (one run's summary per seed, the comparison over runs and seeds) with ``figures``.
See docs/slu.md.
"""
