# Tiny corpus sizes for tests (run.sh --tiny true): seconds, not minutes.
train_utts=3
dev_utts=2
test_utts=2
fsc_speakers=3          # one speaker per FSC split (train/valid/test)
fsc_utts_per_speaker=2
lj_utts=2
tts_utts=203            # the chapter split needs > 200 clips: test = LJ001 (100), valid = LJ002 (100), train 3
tts_num_test=2
tts_num_prior=2
