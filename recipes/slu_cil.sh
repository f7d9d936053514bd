#!/usr/bin/env bash
# Class-incremental SLU (COCONUT): the corpus-agnostic stages (ESPnet TEMPLATE style).
#
# Called by egs/<corpus>/run.sh from that directory, after its stage 0 (data prep) wrote
# Kaldi data dirs <data-root>/<set>/ for the train/valid/test sets. Every stage calls a
# `speechunits` command; finished work is skipped (split.json + tokenizer provenance, one
# result.json per task and method), so rerunning a stage is cheap and an interrupted
# method resumes from its last checkpoint.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"

# Options (--name value, Kaldi style; see utils/parse_options.sh)
stage=1                 # first stage to run
stop_stage=100          # last stage to run
slu_config=""               # experiment YAML (e.g. recipes/conf/slu_cil_fsc.yaml)
data_root=data          # holds the Kaldi data dirs <data-root>/<set>/
train_set=train         # data dir names under --data-root
valid_set=valid         # (empty: no validation scoring)
test_set=test
exp_dir=exp/slu_cil     # split.json, tokenizer/, <method>/task<t>/, RESULTS.md
methods="ft er er_kd coconut coconut_kd joint"  # methods run in stage 2 (same seeds and memory budget)
nj=1                    # methods trained in parallel in stage 2
threads=0               # torch CPU threads per method (0: torch's default)
device=""               # cpu | cuda (empty: CUDA when available)
overrides=""            # extra config overrides, e.g. "epochs_per_task=5 memory.selection=random"

help_message="Usage: recipes/slu_cil.sh --slu-config CONF.yaml [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  class split + BPE tokenizer: speechunits slu-cil --prepare-only
       -> <exp-dir>/split.json, <exp-dir>/tokenizer/bpe.model
  2  each method of --methods through all tasks: speechunits slu-cil --method M
       -> <exp-dir>/<method>/task<t>/ (checkpoints, logs, result.json), <method>/results.json
  3  comparison table over the methods: speechunits slu-results
       -> <exp-dir>/RESULTS.md, <exp-dir>/accuracy.png"

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
if [[ -z "$slu_config" ]]; then
  echo "$0: give the experiment config with --slu-config (e.g. recipes/conf/slu_cil_fsc.yaml)" >&2
  exit 1
fi
log_dir="$exp_dir/log"
for set in $train_set $valid_set $test_set; do
  if (( stage <= 2 && 1 <= stop_stage )) && [[ ! -d "$data_root/$set" ]]; then
    echo "$0: data dir $data_root/$set is missing; run stage 0 of the egs/<corpus>/run.sh first" >&2
    exit 1
  fi
done

# shellcheck disable=SC2206
common=(--config "$slu_config" --data-dir "$data_root" --out-dir "$exp_dir"
        "splits.train=$train_set" "splits.test=$test_set" $overrides)
if [[ -n "$valid_set" ]]; then common+=("splits.valid=$valid_set"); else common+=("eval_valid=false"); fi
opts=()
[[ -n "$device" ]] && opts+=(--device "$device")
(( threads > 0 )) && opts+=(--threads "$threads")

if stage_begin 1 "class split and BPE tokenizer -> $exp_dir"; then
  run_logged "$log_dir/prepare.log" speechunits slu-cil --prepare-only "${opts[@]}" "${common[@]}"
fi

if stage_begin 2 "methods: $methods (nj=$nj)"; then
  pids=() names=()
  failed=0
  for m in $methods; do
    log="$log_dir/$m.log"
    mkdir -p "$log_dir"
    echo "+ speechunits slu-cil --method $m ... (log: $log)"
    printf '# %s  cwd %s\n' "$(date '+%F %T')" "$PWD" >> "$log"
    speechunits slu-cil --method "$m" "${opts[@]}" "${common[@]}" >> "$log" 2>&1 &
    pids+=("$!"); names+=("$m")
    if (( ${#pids[@]} >= nj )); then
      wait "${pids[0]}" || { echo "error: method ${names[0]} failed; see $log_dir/${names[0]}.log" >&2; failed=1; }
      pids=("${pids[@]:1}"); names=("${names[@]:1}")
    fi
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "error: method ${names[$i]} failed; see $log_dir/${names[$i]}.log" >&2; failed=1; }
  done
  (( failed == 0 )) || exit 1
  for m in $methods; do
    echo "stage 2: $m -> $exp_dir/$m/results.json"
  done
fi

if stage_begin 3 "comparison table of: $methods"; then
  dirs=()
  for m in $methods; do dirs+=("$exp_dir/$m"); done
  run_logged "$log_dir/results.log" speechunits slu-results --exp "${dirs[@]}" --out "$exp_dir"
  echo "stage 3: results in $exp_dir/RESULTS.md"
fi
