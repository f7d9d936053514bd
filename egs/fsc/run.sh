#!/usr/bin/env bash
# Class-incremental SLU (COCONUT) on Fluent Speech Commands (real corpus on disk; nothing is downloaded).
#   bash egs/fsc/run.sh --corpus-dir /data/fluent_speech_commands_dataset
#   bash egs/fsc/run.sh --corpus-dir ... --benchmark fsc-3 --methods "ft coconut" --device cuda
#   bash egs/fsc/run.sh --corpus-dir ... --input units --sylber-model /models/sylber.ckpt --num-clusters 2000
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/fsc/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh
. ./cmd.sh || exit 1         # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                      # first stage to run
stop_stage=100               # last stage to run
corpus_dir="$FSC"            # fluent_speech_commands_dataset dir (default: $SPEECHUNITS_FSC via egs/db.sh)
slu_config=../../recipes/conf/slu_cil_fsc.yaml  # experiment config (model, losses, memory, training)
benchmark=fsc-6              # fsc-3 | fsc-6 | fsc-10
methods="ft er er_m2=er,memory.fraction=0.02 er_kd coconut coconut_kd joint"  # runs (recipes/slu_cil.sh --methods)
seeds=0                      # seeds of every run, e.g. 0,1,2 (RESULTS.md: mean +- std)
sweep=""                     # loss settings tried on the valid split first (recipes/slu_cil.sh --sweep)
sweep_seeds=0                # seeds of the sweep runs
nj=1                         # methods trained in parallel
ngpu=1                       # GPUs per node for each training run (1: one process; >1: DDP with torchrun)
nnodes=1                     # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=""                    # cpu | cuda (empty: CUDA when available)
overrides=""                 # extra config overrides (key=value ...)
data_root=data               # Kaldi data dirs: <data-root>/{train,valid,test}
exp_root=exp                 # outputs: <exp-root>/slu_cil_<benchmark>/
input=audio                  # audio | units (the encoder reads unit sets; config --units-config)
units_dir=""                 # unit sets <units-dir>/{train,valid,test}/ (default: <data-root>/units)
units_config=../../recipes/conf/slu_cil_fsc_units.yaml  # experiment config with --input units
sylber_model=""              # --input units: Sylber checkpoint that makes missing unit sets
num_clusters=0               # --input units: k-means codebook size of those unit sets

help_message="Usage: bash egs/fsc/run.sh --corpus-dir DIR [options]
Stages:
  0  data prep: speechunits prepare-data for train/valid/test -> <data-root>/<split>/
  1  (--input units) unit sets <units-dir>/{train,valid,test}/ (recipes/slu_units.sh: speechunits
     tokenize with --sylber-model, cluster on train with --num-clusters, quantize; skipped when
     already quantized), then
     class split and BPE tokenizer (recipes/slu_cil.sh)
  2  shared first task of each seed, the --sweep runs and their choice on valid, then every run of
     --methods at every seed (recipes/slu_cil.sh) -> <exp-root>/slu_cil_<benchmark>/<run>/seed<k>/
  3  comparison over runs and seeds -> <exp-root>/slu_cil_<benchmark>/RESULTS.md, accuracy.png, matrix.png
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (tokenize of --input units), --train-cmd
  each training (the slu-cil runs, each a speechunits launch: --ngpu GPUs per node on --nnodes
  nodes); both default to those of cmd.sh, chosen by SPEECHUNITS_CMD_BACKEND=local|slurm (site
  settings of Slurm in conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\" --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir slu_config data_root exp_root units_dir units_config sylber_model

LAYOUT="fluent_speech_commands_dataset/
  data/train_data.csv valid_data.csv test_data.csv   columns: ,path,speakerId,transcription,action,object,location
  wavs/speakers/<speakerId>/<uuid>.wav                (paths in the CSVs are relative to this dir)"

if stage_begin 0 "data prep of FSC train/valid/test"; then
  . ../../utils/path.sh
  require_corpus FSC "$corpus_dir" "$LAYOUT" || exit 1
  for split in train valid test; do
    if [[ ! -f "$corpus_dir/data/${split}_data.csv" ]]; then
      echo "error: $corpus_dir/data/${split}_data.csv not found; expected layout:" >&2
      echo "$LAYOUT" | sed 's/^/  /' >&2
      exit 1
    fi
  done
  for split in train valid test; do
    run_logged "$exp_root/data/log/prepare.$split.log" speechunits prepare-data --corpus fsc \
      --corpus-dir "$corpus_dir" --split "$split" --out "$data_root/$split"
  done
fi

if [[ "$input" == units ]]; then  # unit-token input: unit sets, then the units config
  units_dir="$(realpath -m -- "${units_dir:-$data_root/units}")"
  if stage_begin 1 "unit sets of train/valid/test -> $units_dir"; then
    ../../recipes/slu_units.sh --data-root "$data_root" --sets "train valid test" --units-dir "$units_dir" \
      --sylber-model "$sylber_model" --num-clusters "$num_clusters" --device "${device:-auto}" --cmd "$cmd"
  fi
  slu_config="$units_config" overrides="model.encoder.units_dir=$units_dir $overrides"
elif [[ "$input" != audio ]]; then
  echo "$0: --input $input: expected audio | units" >&2
  exit 1
fi

if (( stop_stage >= 1 )); then
  ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --slu-config "$slu_config" --data-root "$data_root" --train-set train --valid-set valid --test-set test \
    --exp-dir "$exp_root/slu_cil_$benchmark" --methods "$methods" --seeds "$seeds" \
    --sweep "$sweep" --sweep-seeds "$sweep_seeds" --nj "$nj" --device "$device" \
    --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --overrides "benchmark=$benchmark $overrides"
fi
