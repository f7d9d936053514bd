#!/usr/bin/env bash
# Sylber syllable units on LibriSpeech (real corpus, given on disk; nothing is downloaded).
#   bash egs/librispeech/run.sh --corpus-dir /data/LibriSpeech --alignments /data/librispeech_alignments
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/librispeech/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh
. ./cmd.sh || exit 1         # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

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
tune_thresholds=false        # stages 2-3: pick each model's norm/merge thresholds on the first dev set (needs --alignments)
ngpu=1                       # GPUs per node for training (>1: DDP with torchrun)
nnodes=1                     # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=auto                  # auto | cpu | cuda for training and tokenization
init=""                      # local HuBERT base checkpoint (fairseq .pt or HF dir) to start Sylber stage 1 from
sylber_ckpt=""               # released Sylber checkpoint (.ckpt / HF dir): skips training stages 2-3
num_clusters=10000           # k-means codebook size (stage 5; 0 skips it)
cluster_opts="--max-samples 2000000 --batch-size 50000"  # extra `speechunits cluster` flags
stage1_opts=""               # KEY=VALUE overrides of recipes/conf/sylber_stage1.yaml
stage2_opts=""               # KEY=VALUE overrides of recipes/conf/sylber_stage2.yaml

help_message="Usage: bash egs/librispeech/run.sh [options]
Stages:
  0  data prep: speechunits prepare-data for every train/dev/test split
       -> <data-root>/<split>/ (Kaldi files, manifest.jsonl, provenance.json)
       (several --train-sets are combined into <data-root>/train)
  1  bootstrap segments of the train, dev and test sets        (recipes/sylber.sh, as are 2-6)
  2  Sylber stage 1 training (recipes/conf/sylber_stage1.yaml; --init HuBERT checkpoint)
  3  Sylber stage 2 training (recipes/conf/sylber_stage2.yaml)
  4  tokenization of train/dev/test with the stage-1 and stage-2 models
  5  k-means codebook (--num-clusters) and quantization
  6  boundary evaluation of the test splits against --alignments -> <exp-root>/sylber/RESULTS.md
  e.g. bash egs/librispeech/run.sh --stage 3   resumes at stage 3 (training resumes from its last checkpoint)
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (bootstrap-segments, tokenize), --train-cmd
  each training (speechunits launch: --ngpu GPUs per node on --nnodes nodes); both default to those
  of cmd.sh, chosen by SPEECHUNITS_CMD_BACKEND=local|slurm (site settings of Slurm in
  conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\" --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

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

train_set="$train_sets"
if [[ "$train_sets" == *" "* ]]; then
  train_set=train
  if (( stage <= 0 && 0 <= stop_stage )); then
    # shellcheck disable=SC2046
    run_logged "$exp_root/data/log/combine.log" speechunits combine-data "$data_root/train" \
      $(for s in $train_sets; do echo "$data_root/$s"; done)
  fi
fi

if (( stop_stage >= 1 )); then
  ../../recipes/sylber.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" \
    --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/sylber" \
    --train-set "$train_set" --dev-sets "$dev_sets" --test-sets "$test_sets" \
    --init "$init" --sylber-ckpt "$sylber_ckpt" --num-clusters "$num_clusters" --cluster-opts "$cluster_opts" \
    --stage1-opts "$stage1_opts" --stage2-opts "$stage2_opts" \
    --alignments "$alignments" --tune-shift "$tune_shift" --tune-thresholds "$tune_thresholds"
fi
