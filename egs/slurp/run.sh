#!/usr/bin/env bash
# Class-incremental SLU (COCONUT) on SLURP, scenario level (real corpus on disk; nothing is downloaded).
#   bash egs/slurp/run.sh --corpus-dir /data/slurp --device cuda
# It also runs on a synthetic SLURP-shaped corpus (speechunits synth-corpus --layout slurp --out DIR),
# on CPU with a small config:
#   bash egs/slurp/run.sh --corpus-dir DIR/slurp --slu-config egs/synth/conf/slu_cil_slurp_tiny.yaml --device cpu   # from the repo root
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/slurp/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh
. ./cmd.sh || exit 1         # train_cmd: the default of --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                      # first stage to run
stop_stage=100               # last stage to run
corpus_dir="$SLURP"          # SLURP dir (default: $SPEECHUNITS_SLURP via egs/db.sh)
audio_dir=""                 # audio dir (default: <corpus-dir>/audio/slurp_real)
slu_config=../../recipes/conf/slu_cil_slurp.yaml  # experiment config (wav2vec2 encoder checkpoint, decoder, losses)
benchmark=slurp-3            # slurp-3 | slurp-6
methods="ft er er_m2=er,memory.fraction=0.02 er_kd coconut coconut_kd joint"  # runs (recipes/slu_cil.sh --methods)
seeds=0                      # seeds of every run, e.g. 0,1,2 (RESULTS.md: mean +- std)
sweep=""                     # loss settings tried on the valid split first (recipes/slu_cil.sh --sweep)
sweep_seeds=0                # seeds of the sweep runs
nj=1                         # methods trained in parallel
ngpu=1                       # GPUs per node for each training run (1: one process; >1: DDP with torchrun)
nnodes=1                     # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=""                    # cpu | cuda (empty: CUDA when available)
overrides=""                 # extra config overrides, e.g. "model.encoder.checkpoint=/models/wav2vec2_base.pt"
data_root=data               # Kaldi data dirs: <data-root>/{train,devel,test}
exp_root=exp                 # outputs: <exp-root>/slu_cil_<benchmark>/

help_message="Usage: bash egs/slurp/run.sh --corpus-dir DIR [options]
  DIR: a SLURP clone, or DIR/slurp of speechunits synth-corpus --layout slurp --out DIR
Stages:
  0  data prep: speechunits prepare-data for train/devel/test -> <data-root>/<split>/
  1  class split and BPE tokenizer (recipes/slu_cil.sh)
  2  shared first task of each seed, the --sweep runs and their choice on valid, then every run of
     --methods at every seed (recipes/slu_cil.sh) -> <exp-root>/slu_cil_<benchmark>/<run>/seed<k>/
  3  comparison over runs and seeds -> <exp-root>/slu_cil_<benchmark>/RESULTS.md, accuracy.png, matrix.png
Jobs (ESPnet style): --train-cmd runs each training (the slu-cil runs, through speechunits launch:
  --ngpu GPUs per node on --nnodes nodes); it defaults to that of cmd.sh, chosen by
  SPEECHUNITS_CMD_BACKEND=local|slurm (site settings of Slurm in conf/slurm.conf), e.g.
  --train-cmd \"slurm --time 24:00:00\" --ngpu 1.
  (--cmd, the sharded corpus jobs of the other recipes, is accepted but unused: SLURP has none.)"

. ../../utils/parse_options.sh
. ../../utils/stages.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir audio_dir slu_config data_root exp_root

LAYOUT="slurp/
  dataset/slurp/train.jsonl devel.jsonl test.jsonl   one JSON object per line (slurp_id, sentence, scenario, action, intent, recordings)
  audio/slurp_real/<recording>.flac                   (or pass --audio-dir)"

if stage_begin 0 "data prep of SLURP train/devel/test"; then
  . ../../utils/path.sh
  require_corpus SLURP "$corpus_dir" "$LAYOUT" || exit 1
  for split in train devel test; do
    if [[ ! -f "$corpus_dir/dataset/slurp/$split.jsonl" ]]; then
      echo "error: $corpus_dir/dataset/slurp/$split.jsonl not found; expected layout:" >&2
      echo "$LAYOUT" | sed 's/^/  /' >&2
      exit 1
    fi
  done
  audio=()
  [[ -n "$audio_dir" ]] && audio=(--audio-dir "$audio_dir")
  for split in train devel test; do
    run_logged "$exp_root/data/log/prepare.$split.log" speechunits prepare-data --corpus slurp \
      --corpus-dir "$corpus_dir" --split "$split" "${audio[@]}" --out "$data_root/$split"
  done
fi

if (( stop_stage >= 1 )); then
  ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --slu-config "$slu_config" --data-root "$data_root" --train-set train --valid-set devel --test-set test \
    --exp-dir "$exp_root/slu_cil_$benchmark" --methods "$methods" --seeds "$seeds" \
    --sweep "$sweep" --sweep-seeds "$sweep_seeds" --nj "$nj" --device "$device" \
    --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --overrides "benchmark=$benchmark $overrides"
fi
