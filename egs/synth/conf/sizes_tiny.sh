# Tiny corpus sizes for tests (run.sh --tiny true): seconds, not minutes.
train_utts=3
dev_utts=2
test_utts=2
fsc_speakers=3          # one speaker per FSC split (train/valid/test)
fsc_utts_per_speaker=2
lj_utts=2
