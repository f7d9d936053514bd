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
exp_dir=exp/slu_cil     # split.json, tokenizer/, task0/seed<k>/, <run>/seed<k>/task<t>/, RESULTS.md
methods="ft er er_kd coconut coconut_kd joint"  # runs of stage 2: METHOD, or NAME=METHOD[,KEY=VALUE...] for a
                        # method with other settings (e.g. er_m2=er,memory.fraction=0.02); same seeds for all
seeds=0                 # comma-separated seeds of every run (e.g. 0,1,2); slu-results reports mean +- std
sweep=""                # loss settings tried on the valid split before stage 2 (stage 2 then uses the best):
                        # space-separated NAME=KEY=VALUE[,KEY=VALUE...], run as method coconut on --sweep-seeds
sweep_seeds=0           # seeds of the sweep runs
nj=1                    # runs trained in parallel in stage 2
train_cmd=local         # how each training (slu-cil run) goes: local | "slurm --time 24:00:00 ..." (speechunits launch --cmd)
ngpu=0                  # GPUs per node for each training (>1: DDP, torchrun)
nnodes=1                # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
threads=0               # torch CPU threads per method (0: torch's default)
device=""               # cpu | cuda (empty: CUDA when available)
overrides=""            # extra config overrides, e.g. "epochs_per_task=5 memory.selection=random"

help_message="Usage: recipes/slu_cil.sh --slu-config CONF.yaml [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  class split + BPE tokenizer: speechunits slu-cil --prepare-only
       -> <exp-dir>/split.json, <exp-dir>/tokenizer/bpe.model
  2  the shared first task of each seed when the config has first_task.shared=true
       (speechunits slu-cil --first-task-only) -> <exp-dir>/task0/seed<k>/; then, with --sweep, each
       sweep setting as method coconut on --sweep-seeds -> <exp-dir>/sweep-<name>/seed<k>/, and the
       setting with the best valid AIA (speechunits slu-select; the test split is never used)
       -> <exp-dir>/sweep/chosen.txt, added to the overrides of every later run; then each run of
       --methods at every seed of --seeds: speechunits slu-cil --method M --name NAME --seeds S
       -> <exp-dir>/<name>/seed<k>/task<t>/ (checkpoints, logs, result.json), <name>/seed<k>/results.json
  3  comparison table over the runs (mean +- std over seeds): speechunits slu-results
       -> <exp-dir>/RESULTS.md, accuracy.png (error bars), matrix.png (accuracy matrices)
Jobs: every training of stage 2 (the first tasks, each sweep and method run) is one speechunits launch
  of --train-cmd (local processes, or Slurm jobs with --train-cmd \"slurm --time 24:00:00 ...\") on
  --nnodes nodes with --ngpu GPUs each; --nj of them at once (logs <exp-dir>/log/<run>.log, <run>.slurm.log)."

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
[[ -n "$train_cmd" ]] || { echo "$0: --train-cmd is empty (local, or e.g. \"slurm --time 24:00:00\")" >&2; exit 1; }
[[ "$ngpu" =~ ^[0-9]+$ ]] || { echo "$0: --ngpu must be a non-negative integer, got '$ngpu'" >&2; exit 1; }
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nnodes must be a positive integer, got '$nnodes'" >&2; exit 1; }
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nj must be a positive integer, got '$nj'" >&2; exit 1; }
log_dir="$exp_dir/log"
for set in $train_set $valid_set $test_set; do
  if (( stage <= 2 && 1 <= stop_stage )) && [[ ! -d "$data_root/$set" ]]; then
    echo "$0: data dir $data_root/$set is missing; run stage 0 of the egs/<corpus>/run.sh first" >&2
    exit 1
  fi
done

# shellcheck disable=SC2206
settings=("splits.train=$train_set" "splits.test=$test_set" $overrides)
if [[ -n "$valid_set" ]]; then settings+=("splits.valid=$valid_set"); else settings+=("eval_valid=false"); fi
common=(--config "$slu_config" --data-dir "$data_root" --out-dir "$exp_dir" "${settings[@]}")
opts=()
[[ -n "$device" ]] && opts+=(--device "$device")
(( threads > 0 )) && opts+=(--threads "$threads")

if stage_begin 1 "class split and BPE tokenizer -> $exp_dir"; then
  run_logged "$log_dir/prepare.log" speechunits slu-cil --prepare-only "${opts[@]}" "${common[@]}"
fi

# run_all OUT_DIR ENTRIES SEEDS [EXTRA_OVERRIDES]: every entry (METHOD or NAME=METHOD[,K=V...]) through all
# tasks at every seed, --nj at once; logs in $log_dir/<name>.log
run_all() {
  local out="$1" entries="$2" run_seeds="$3" extra="${4:-}"
  local pids=() names=() failed=0 entry name spec method own log
  for entry in $entries; do
    name="${entry%%=*}"; spec="${entry#*=}"; method="${spec%%,*}"; own=""
    [[ "$spec" == *,* ]] && own="${spec#*,}"
    log="$log_dir/$name.log"
    mkdir -p "$log_dir"
    echo "+ speechunits launch --cmd \"$train_cmd\" --ngpu $ngpu --nnodes $nnodes -- slu-cil --method $method" \
         "--name $name --seeds $run_seeds ${own//,/ } (log: $log)"
    printf '# %s  cwd %s\n' "$(date '+%F %T')" "$PWD" >> "$log"
    # each run one training job: speechunits launch (--train-cmd, --ngpu GPUs per node, --nnodes nodes)
    # shellcheck disable=SC2086
    speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --log "$log_dir/$name.slurm.log" -- \
      slu-cil --method "$method" --name "$name" --seeds "$run_seeds" "${opts[@]}" \
      --config "$slu_config" --data-dir "$data_root" --out-dir "$out" "${settings[@]}" $extra ${own//,/ } >> "$log" 2>&1 &
    pids+=("$!"); names+=("$name")
    if (( ${#pids[@]} >= nj )); then
      wait "${pids[0]}" || { echo "error: run ${names[0]} failed; see $log_dir/${names[0]}.log" >&2; failed=1; }
      pids=("${pids[@]:1}"); names=("${names[@]:1}")
    fi
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "error: run ${names[$i]} failed; see $log_dir/${names[$i]}.log" >&2; failed=1; }
  done
  return "$failed"
}

run_names() {  # the NAME of each entry of "$1"
  local entry out=()
  for entry in $1; do out+=("${entry%%=*}"); done
  echo "${out[@]}"
}

chosen=""
if stage_begin 2 "runs: $methods; seeds $seeds (nj=$nj)"; then
  all_seeds="$seeds"
  [[ -n "$sweep" ]] && all_seeds="$(echo "$seeds,$sweep_seeds" | tr ',' '\n' | sort -nu | paste -sd, -)"
  run_logged "$log_dir/first_task.log" speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --log "$log_dir/first_task.slurm.log" -- slu-cil --first-task-only --seeds "$all_seeds" "${opts[@]}" "${common[@]}"
  if [[ -n "$sweep" ]]; then
    entries=""
    for s in $sweep; do entries+=" sweep-${s%%=*}=coconut,${s#*=}"; done
    run_all "$exp_dir" "$entries" "$sweep_seeds" || exit 1
    sweep_dirs=()
    for n in $(run_names "$entries"); do sweep_dirs+=("$exp_dir/$n"); done
    run_logged "$log_dir/select.log" speechunits slu-select --exp "${sweep_dirs[@]}" --out "$exp_dir/sweep"
  fi
  [[ -f "$exp_dir/sweep/chosen.txt" ]] && chosen="$(cat "$exp_dir/sweep/chosen.txt")"
  [[ -n "$chosen" ]] && echo "stage 2: loss settings chosen on the valid split: $chosen"
  run_all "$exp_dir" "$methods" "$seeds" "$chosen" || exit 1
  for n in $(run_names "$methods"); do
    echo "stage 2: $n -> $exp_dir/$n/seed*/results.json"
  done
fi

if stage_begin 3 "comparison table of: $(run_names "$methods")"; then
  dirs=()
  for n in $(run_names "$methods"); do dirs+=("$exp_dir/$n"); done
  run_logged "$log_dir/results.log" speechunits slu-results --exp "${dirs[@]}" --out "$exp_dir"
  echo "stage 3: results in $exp_dir/RESULTS.md"
fi
