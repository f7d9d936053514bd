#!/usr/bin/env bash
# Class-incremental SLU (COCONUT, FSC-6 protocol) on a synthetic FSC-shaped corpus, on CPU:
# Festival/espeak-ng speech (no download, no real corpus), a tiny log-mel conformer
# (conf/slu_cil_tiny.yaml), all six methods with the same seeds and memory budget.
#   bash egs/synth/run_slu.sh                       # about 25 minutes on 2 CPU cores
#   bash egs/synth/run_slu.sh --methods "ft coconut" --stage 2
#   bash egs/synth/run_slu.sh --input units --sylber-model exp/sylber/stage2.ckpt --num-clusters 64
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
input=audio               # audio | units (the encoder reads unit sets; config --units-config)
units_dir=""              # unit sets <units-dir>/<set>/ (default: <data-root>/slu_units)
units_config=conf/slu_cil_units_tiny.yaml  # experiment config with --input units
sylber_model=""           # --input units: Sylber checkpoint that makes missing unit sets
num_clusters=0            # --input units: k-means codebook size of those unit sets

help_message="Usage: bash egs/synth/run_slu.sh [options]
Stages:
  0  data prep: speechunits synth-corpus --layout fsc into <data-root>/slu_corpora, then
     speechunits prepare-data -> <data-root>/slu_fsc_{train,valid,test}
  1  (--input units) unit sets <units-dir>/slu_fsc_{train,valid,test}/ (recipes/slu_units.sh:
     speechunits tokenize with --sylber-model, cluster on train with --num-clusters, quantize;
     skipped when already quantized), then
     class split (fsc-6) and BPE tokenizer (recipes/slu_cil.sh)
  2  every method through the six tasks (recipes/slu_cil.sh) -> <exp-root>/slu_cil/<method>/
  3  comparison table -> <exp-root>/slu_cil/RESULTS.md, accuracy.png"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" slu_config data_root exp_root units_dir units_config sylber_model

CORPUS="$data_root/slu_corpora"
if stage_begin 0 "synthetic FSC-shaped corpus ($fsc_speakers speakers x $fsc_utts_per_speaker) and data dirs"; then
  run_logged "$exp_root/data/log/synth.slu_fsc.log" speechunits synth-corpus --layout fsc --out "$CORPUS" \
    --num-speakers "$fsc_speakers" --utts-per-speaker "$fsc_utts_per_speaker" --seed "$seed" --nj "$nj"
  for split in train valid test; do
    run_logged "$exp_root/data/log/prepare.slu_fsc_$split.log" speechunits prepare-data --corpus fsc \
      --corpus-dir "$CORPUS/fluent_speech_commands_dataset" --split "$split" --out "$data_root/slu_fsc_$split"
  done
fi

if [[ "$input" == units ]]; then  # unit-token input: unit sets, then the units config
  units_dir="$(realpath -m -- "${units_dir:-$data_root/slu_units}")"
  if stage_begin 1 "unit sets of slu_fsc_{train,valid,test} -> $units_dir"; then
    ../../recipes/slu_units.sh --data-root "$data_root" --sets "slu_fsc_train slu_fsc_valid slu_fsc_test" \
      --units-dir "$units_dir" --sylber-model "$sylber_model" --num-clusters "$num_clusters" --nj "$nj"
  fi
  slu_config="$units_config" overrides="model.encoder.units_dir=$units_dir $overrides"
elif [[ "$input" != audio ]]; then
  echo "$0: --input $input: expected audio | units" >&2
  exit 1
fi

if (( stop_stage >= 1 )); then
  ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --slu-config "$slu_config" --data-root "$data_root" --train-set slu_fsc_train --valid-set slu_fsc_valid \
    --test-set slu_fsc_test --exp-dir "$exp_root/slu_cil" --methods "$methods" --nj "$nj" --threads "$threads" \
    --overrides "$overrides"
fi
