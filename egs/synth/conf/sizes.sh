# Corpus sizes of egs/synth (sourced by run.sh; any of them can be overridden by an option,
# e.g. --train-utts 400). Sized so that stage 0 takes a few minutes on 2 cores with --nj 2
# (measured: about 2.5 minutes; synthesis runs at roughly 20 LibriSpeech-style utt/s).
train_utts=1500         # LibriSpeech-shaped train-clean-100
dev_utts=100            # LibriSpeech-shaped dev-clean
test_utts=100           # LibriSpeech-shaped test-clean
fsc_speakers=20         # FSC-shaped; split train/valid/test by speaker
fsc_utts_per_speaker=15
lj_utts=200             # LJSpeech-shaped (single voice)
tts_utts=1000           # LJSpeech-shaped TTS corpus (kal voice; --tts true): 100 clips per chapter, so
                        # test = LJ001 (100), valid = LJ002 (100), train = LJ003-LJ010 (800)
tts_num_test=100        # TTS test utterances synthesized per row (the attention failure rate is over these)
tts_num_prior=30        # TTS test sentences of the prior-sample rows: 30 x 3 seeds x 2 temperatures
