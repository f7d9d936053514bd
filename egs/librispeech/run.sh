#!/usr/bin/env bash
# Sylber syllable units on LibriSpeech (real corpus, given on disk; nothing is downloaded).
#   bash egs/librispeech/run.sh --corpus-dir /data/LibriSpeech --alignments /data/librispeech_alignments
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/librispeech/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh

stage=0                      # first stage to run
stop_stage=100               # last stage to run
nj=4                         # parallel jobs
corpus_dir="$LIBRISPEECH"    # LibriSpeech dir (default: $SPEECHUNITS_LIBRISPEECH via egs/db.sh)
alignments=""                # optional MFA-style TextGrids (<split>/<spk>/<chap>/<utt>.TextGrid); needed for stage 6
train_sets="train-clean-100" # LibriSpeech split names (space-separated)
dev_sets="dev-clean"         # LibriSpeech split names (space-separated)
test_sets="test-clean"       # LibriSpeech split names (space-separated)
data_root=data               # Kaldi data dirs: <data-root>/<split>/
exp_root=exp                 # logs and model outputs: <exp-root>/...
tune_shift=false             # stage 6: tune the boundary shift on the first dev set

help_message="Usage: bash egs/librispeech/run.sh [options]
Stages:
  0  data prep: speechunits prepare-data for every train/dev/test split
       -> <data-root>/<split>/ (Kaldi files, manifest.jsonl, provenance.json)
  1  bootstrap segments of the dev and test splits (recipes/sylber.sh)
       -> <exp-root>/sylber/bootstrap/<split>/
  6  boundary evaluation of the test splits against --alignments (recipes/sylber.sh)
       -> <exp-root>/sylber/RESULTS.md"

. ../../utils/parse_options.sh
. ../../utils/stages.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir alignments data_root exp_root   # relative paths on the command line: from the caller's cwd

if stage_begin 0 "data prep of LibriSpeech splits: $train_sets $dev_sets $test_sets"; then
  local/data.sh --corpus-dir "$corpus_dir" --sets "$train_sets $dev_sets $test_sets" \
    --alignments "$alignments" --data-root "$data_root" --log-dir "$exp_root/data/log"
  echo "stage 0: data dirs in $(cd "$data_root" && pwd):"
  for set in $train_sets $dev_sets $test_sets; do
    echo "  $data_root/$set  ($(wc -l < "$data_root/$set/manifest.jsonl") utterances)"
  done
fi

if (( stop_stage >= 1 )); then
  ../../recipes/sylber.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" \
    --data-root "$data_root" --exp-dir "$exp_root/sylber" \
    --dev-sets "$dev_sets" --test-sets "$test_sets" --alignments "$alignments" --tune-shift "$tune_shift"
fi
