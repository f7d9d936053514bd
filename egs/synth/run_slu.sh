#!/usr/bin/env bash
# Class-incremental SLU (COCONUT, FSC-6 protocol) on a synthetic FSC-shaped corpus, on CPU:
# Festival/espeak-ng speech (no download, no real corpus), a tiny log-mel conformer
# (conf/slu_cil_tiny.yaml), all six methods with the same seeds and memory budget.
#   bash egs/synth/run_slu.sh                       # about 25 minutes on 2 CPU cores
#   bash egs/synth/run_slu.sh --methods "ft coconut" --stage 2
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/synth/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0                   # first stage to run
stop_stage=100            # last stage to run
nj=2                      # synthesis jobs in stage 0, methods trained in parallel in stage 2
threads=1                 # torch threads per method (nj x threads <= cores)
seed=0                    # seed of the corpus generator
fsc_speakers=60           # synthetic speakers, split ~70/15/15 into train/valid/test
fsc_utts_per_speaker=50   # 60 x 50 = 3000 utterances over the 31 FSC intents
slu_config=conf/slu_cil_tiny.yaml  # experiment config
methods="ft er er_kd coconut coconut_kd joint"  # methods (same seeds and memory budget)
overrides=""              # extra config overrides (key=value ...)
data_root=data            # corpus in <data-root>/slu_corpora, data dirs <data-root>/slu_fsc_<split>
exp_root=exp              # outputs: <exp-root>/slu_cil/

help_message="Usage: bash egs/synth/run_slu.sh [options]
Stages:
  0  data prep: speechunits synth-corpus --layout fsc into <data-root>/slu_corpora, then
     speechunits prepare-data -> <data-root>/slu_fsc_{train,valid,test}
  1  class split (fsc-6) and BPE tokenizer (recipes/slu_cil.sh)
  2  every method through the six tasks (recipes/slu_cil.sh) -> <exp-root>/slu_cil/<method>/
  3  comparison table -> <exp-root>/slu_cil/RESULTS.md, accuracy.png"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" slu_config data_root exp_root

CORPUS="$data_root/slu_corpora"
if stage_begin 0 "synthetic FSC-shaped corpus ($fsc_speakers speakers x $fsc_utts_per_speaker) and data dirs"; then
  run_logged "$exp_root/data/log/synth.slu_fsc.log" speechunits synth-corpus --layout fsc --out "$CORPUS" \
    --num-speakers "$fsc_speakers" --utts-per-speaker "$fsc_utts_per_speaker" --seed "$seed" --nj "$nj"
  for split in train valid test; do
    run_logged "$exp_root/data/log/prepare.slu_fsc_$split.log" speechunits prepare-data --corpus fsc \
      --corpus-dir "$CORPUS/fluent_speech_commands_dataset" --split "$split" --out "$data_root/slu_fsc_$split"
  done
fi

if (( stop_stage >= 1 )); then
  ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --slu-config "$slu_config" --data-root "$data_root" --train-set slu_fsc_train --valid-set slu_fsc_valid \
    --test-set slu_fsc_test --exp-dir "$exp_root/slu_cil" --methods "$methods" --nj "$nj" --threads "$threads" \
    --overrides "$overrides"
fi
