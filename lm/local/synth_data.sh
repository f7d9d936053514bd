#!/usr/bin/env bash
# Data for lm/run.sh without a download: a LibriSpeech-shaped Festival corpus (egs/synth's generator
# and voices) with more training speech than egs/synth's own, in one plan so that no sentence of
# dev-clean/test-clean is in the training splits (the generator draws unique sentences per plan).
#   bash lm/local/synth_data.sh [--train-utts 6000] [--nj 2]  -> lm/exp/synth/data/{train,dev-clean,test-clean}
# then: bash lm/run.sh --data-root lm/exp/synth/data --train-set train
# Measured on 2 CPU cores: about 8 minutes for 7,700 utterances (7.0 h of speech) with --nj 2.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. ./cmd.sh || exit 1   # cmd: the default of --cmd (lm/cmd.sh; SPEECHUNITS_CMD_BACKEND=local|slurm)
unset train_cmd        # nothing is trained here

train_utts=6000   # train-clean-360 utterances, on top of the 1,500 of train-clean-100
nj=2
seed=0
out=exp/synth     # corpora/ and data/ go below it
help_message="Usage: bash lm/local/synth_data.sh [--train-utts N] [--nj N] [--cmd CMD] [--seed S] [--out DIR]
  --cmd: how the --nj synthesis shards run (local, or e.g. \"slurm --mem 4G\"; default from lm/cmd.sh)"

. ../utils/parse_options.sh
. ../utils/stages.sh
. ../utils/path.sh
user_paths "$CALLER_DIR" out

corpora="$out/corpora"
run_logged "$out/log/synth.log" speechunits synth-corpus --layout librispeech --out "$corpora" \
  --splits "train-clean-100:1500,dev-clean:100,test-clean:100,train-clean-360:$train_utts" --seed "$seed" --nj "$nj" \
  --cmd "$cmd"
for set in train-clean-100 train-clean-360 dev-clean test-clean; do
  run_logged "$out/log/prepare.$set.log" speechunits prepare-data --corpus librispeech \
    --corpus-dir "$corpora/LibriSpeech" --split "$set" --out "$out/data/$set"
done
run_logged "$out/log/combine.train.log" speechunits combine-data "$out/data/train" \
  "$out/data/train-clean-100" "$out/data/train-clean-360"
