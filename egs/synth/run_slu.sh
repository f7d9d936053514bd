#!/usr/bin/env bash
# Class-incremental SLU (COCONUT) on a synthetic corpus, on CPU: Festival/espeak-ng speech
# (no download, no real corpus), a tiny log-mel conformer, all six methods with the same
# seeds and memory budget. --corpus fsc (default): FSC-shaped corpus, FSC-6 protocol
# (conf/slu_cil_tiny.yaml); --corpus slurp: SLURP-shaped corpus, SLURP-3 protocol over the
# 18 scenarios (conf/slu_cil_slurp_tiny.yaml).
#   bash egs/synth/run_slu.sh                       # about 25 minutes on 2 CPU cores
#   bash egs/synth/run_slu.sh --methods "ft coconut" --stage 2
#   bash egs/synth/run_slu.sh --corpus slurp
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
corpus=fsc                # fsc | slurp: which synthetic corpus and protocol
slurp_splits=train:600,devel:120,test:120  # slurp: sentences per split
slurp_recordings=2        # slurp: speakers reading each sentence
slu_config=""             # experiment config (default: conf/slu_cil_tiny.yaml, slurp: conf/slu_cil_slurp_tiny.yaml)
methods="ft er er_kd coconut coconut_kd joint"  # methods (same seeds and memory budget)
overrides=""              # extra config overrides (key=value ...)
data_root=data            # corpus in <data-root>/slu_corpora, data dirs <data-root>/slu_<corpus>_<split>
exp_root=exp              # outputs: <exp-root>/slu_cil/ (slurp: <exp-root>/slu_cil_slurp_<benchmark>/)

help_message="Usage: bash egs/synth/run_slu.sh [options]
Stages (EXP = <exp-root>/slu_cil for fsc, <exp-root>/slu_cil_slurp_<benchmark> for slurp):
  0  data prep: speechunits synth-corpus --layout fsc|slurp into <data-root>/slu_corpora, then
     speechunits prepare-data -> <data-root>/slu_fsc_{train,valid,test} or slu_slurp_{train,devel,test}
  1  class split (fsc-6 or the config's slurp benchmark) and BPE tokenizer (recipes/slu_cil.sh)
  2  every method through all tasks (recipes/slu_cil.sh) -> EXP/<method>/
  3  comparison table -> EXP/RESULTS.md, accuracy.png"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
case "$corpus" in
  fsc) [[ -n "$slu_config" ]] || slu_config=conf/slu_cil_tiny.yaml ;;
  slurp) [[ -n "$slu_config" ]] || slu_config=conf/slu_cil_slurp_tiny.yaml ;;
  *) echo "$0: --corpus must be fsc or slurp, found '$corpus'" >&2; exit 1 ;;
esac
user_paths "$CALLER_DIR" slu_config data_root exp_root

CORPUS="$data_root/slu_corpora"
if [[ "$corpus" == slurp ]]; then
  benchmark=$(sed -n 's/^benchmark: *\([^ #]*\).*/\1/p' "$slu_config")
  for o in $overrides; do [[ "$o" == benchmark=* ]] && benchmark="${o#benchmark=}"; done
  if [[ -z "$benchmark" ]]; then
    echo "$0: $slu_config has no 'benchmark:' line; give one there or with --overrides benchmark=slurp-3" >&2
    exit 1
  fi
  if stage_begin 0 "synthetic SLURP-shaped corpus ($slurp_splits sentences x $slurp_recordings) and data dirs"; then
    run_logged "$exp_root/data/log/synth.slu_slurp.log" speechunits synth-corpus --layout slurp --out "$CORPUS" \
      --splits "$slurp_splits" --recordings-per-sentence "$slurp_recordings" --seed "$seed" --nj "$nj"
    for split in train devel test; do
      run_logged "$exp_root/data/log/prepare.slu_slurp_$split.log" speechunits prepare-data --corpus slurp \
        --corpus-dir "$CORPUS/slurp" --split "$split" --out "$data_root/slu_slurp_$split"
    done
  fi
  if (( stop_stage >= 1 )); then
    ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
      --slu-config "$slu_config" --data-root "$data_root" --train-set slu_slurp_train --valid-set slu_slurp_devel \
      --test-set slu_slurp_test --exp-dir "$exp_root/slu_cil_slurp_$benchmark" --methods "$methods" --nj "$nj" \
      --threads "$threads" --overrides "$overrides"
  fi
  exit 0
fi

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
