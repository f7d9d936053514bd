#!/usr/bin/env bash
# Unit sets for SLU on unit tokens (slu-cil with model.encoder.type=units): one quantized unit
# set per data set, <units-dir>/<set>/, from a Sylber model.
#
# Called by egs/<corpus>/run.sh (from that directory) before the class split, when
# --input units. When every set under --units-dir is already complete (units.jsonl and a
# meta.json with a vocab_size, i.e. quantized), nothing is done; otherwise each set is
# tokenized with `speechunits tokenize` (resumable, shards skipped when done), a k-means
# codebook of --num-clusters is fitted on the first set (the training set) with
# `speechunits cluster`, and every set is quantized in place with `speechunits quantize`.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"

data_root=data          # holds the Kaldi data dirs <data-root>/<set>/
sets="train valid test" # data sets; the first one (the training set) trains the codebook
units_dir=""            # output: <units-dir>/<set>/ (unit sets), <units-dir>/kmeans<K>.pt
sylber_model=""         # Sylber checkpoint (fairseq .pt, HF dir, torchaudio .pt or Lightning .ckpt)
num_clusters=0          # k-means codebook size (the units encoder's vocabulary)
nj=1                    # tokenization jobs
cmd=local               # how they run: local | "slurm --mem 4G --time 2:00:00 ..." (--cmd of tokenize)
device=cpu              # cpu | cuda | auto
tokenize_opts=""        # extra flags for `speechunits tokenize` (e.g. "--norm-threshold 2.5 --merge-threshold 0.8")
cluster_opts=""         # extra flags for `speechunits cluster` (e.g. "--max-samples 1000000")

help_message="Usage: recipes/slu_units.sh --units-dir DIR [--sylber-model PATH --num-clusters K] [options]
  Makes <units-dir>/<set>/ for every set of --sets (skipped when all are already quantized):
  speechunits tokenize (--sylber-model) -> speechunits cluster on the first set (--num-clusters)
  -> speechunits quantize of every set with that codebook. The --nj tokenization shards run through
  --cmd (local processes, or Slurm jobs with --cmd \"slurm --mem 4G ...\")."

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
[[ -n "$cmd" ]] || { echo "$0: --cmd is empty (local, or e.g. \"slurm --mem 4G\")" >&2; exit 1; }
if [[ -z "$units_dir" ]]; then
  echo "$0: give the unit sets' directory with --units-dir" >&2
  exit 1
fi

complete=1
for set in $sets; do
  if [[ ! -f "$units_dir/$set/units.jsonl" ]] || ! grep -Eq '"vocab_size": *[0-9]+' "$units_dir/$set/meta.json" 2>/dev/null; then
    complete=0
  fi
done
if (( complete )); then
  echo "unit sets complete (quantized) under $units_dir for: $sets; not remade"
  exit 0
fi
if [[ -z "$sylber_model" ]] || (( num_clusters < 1 )); then
  echo "$0: $units_dir does not hold quantized unit sets for every one of: $sets;" \
       "give --sylber-model PATH and --num-clusters K to make them" >&2
  exit 1
fi

log_dir="$units_dir/log"
for set in $sets; do
  if [[ ! -d "$data_root/$set" ]]; then
    echo "$0: data dir $data_root/$set is missing; run the data prep stage first" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  run_logged "$log_dir/tokenize.$set.log" speechunits tokenize --model "$sylber_model" \
    --data "$data_root/$set" --out "$units_dir/$set" --nj "$nj" --cmd "$cmd" --device "$device" $tokenize_opts
done
train_first="${sets%% *}"
codebook="$units_dir/kmeans$num_clusters.pt"
# shellcheck disable=SC2086
run_logged "$log_dir/cluster.log" speechunits cluster --units "$units_dir/$train_first" \
  --k "$num_clusters" --out "$codebook" --device "$device" $cluster_opts
for set in $sets; do
  run_logged "$log_dir/quantize.$set.log" speechunits quantize --units "$units_dir/$set" --codebook "$codebook" --device "$device"
done
