#!/usr/bin/env bash
# HuBERT-style self-supervised teacher (Hsu et al., 2021), the stages that precede Sylber stage 1
# when no pretrained HuBERT checkpoint is at hand. Corpus-agnostic: called by egs/<corpus>/run.sh
# from that directory after its data prep wrote Kaldi data dirs <data-root>/<set>/ (combine
# several training corpora first with `speechunits combine-data`). Every stage calls a
# `speechunits` command that skips complete outputs and resumes training from the last checkpoint.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"
RECIPES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

stage=1            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel jobs for the frame targets
cmd=local          # how those jobs run: local | "slurm --mem 4G --time 2:00:00 ..." (--cmd of frame-units)
train_cmd=local    # how each training runs: local | "slurm --time 48:00:00 ..." (speechunits launch --cmd)
ngpu=0             # GPUs per node for training (>1: DDP, torchrun)
nnodes=1           # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=auto        # auto | cpu | cuda
data_root=data     # holds one Kaldi data dir per set: <data-root>/<set>/
exp_dir=exp/hubert # outputs: targets, models, probe, logs
train_set=""       # data dir name of the training audio
valid_set=""       # optional held-out data dir: masked-prediction accuracy at each validation
iter1_config="$RECIPES/conf/hubert_iter1.yaml"  # training config of iteration 1 (stage 2)
iter2_config="$RECIPES/conf/hubert_iter2.yaml"  # training config of iteration 2 (stage 4)
iter1_opts=""      # extra KEY=VALUE overrides of iteration 1 (e.g. "max_steps=1000")
iter2_opts=""      # extra KEY=VALUE overrides of iteration 2
k1=100             # clusters of the MFCC targets (iteration 1; the paper's 100)
k2=500             # clusters of the layer targets (iteration 2; the paper's 500)
iter2_layer=6      # layer of the iteration-1 model clustered for iteration 2 (the paper's 6 for base)
max_frames=1000000 # frames sampled for each k-means
probe_set=""       # data dir of the phone-purity probe (stage 5; empty: skip)
alignments=""      # dir searched for <utt-id>.TextGrid with a phone tier (stage 5)
tier=phones        # phone tier of the probe
probe_k=100        # clusters of the probe
probe_utts=200     # utterances of the probe (a fixed-size probe: the first ones by id)
probe_systems=""   # extra probe rows NAME=CHECKPOINT (space-separated), e.g. a log-mel-taught Sylber

help_message="Usage: recipes/hubert.sh [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  iteration-1 targets: speechunits frame-units --features mfcc --k <k1> on the train (and valid)
     set -> <exp-dir>/targets1/<set>/ (the codebook is fitted on the train set)
  2  iteration 1: speechunits train-hubert -> <exp-dir>/iter1/model.pt
  3  iteration-2 targets: speechunits frame-units --model <exp-dir>/iter1/model.pt --layer <iter2-layer>
     --k <k2> -> <exp-dir>/targets2/<set>/
  4  iteration 2: speechunits train-hubert -> <exp-dir>/iter2/model.pt (recipes/sylber.sh --init takes it)
  5  probe: speechunits probe-phones on <probe-set> (k-means phone purity, cluster purity, PNMI of
     log-mel, MFCC and every layer of both iterations) -> <exp-dir>/probe.{json,md,png}
Jobs: --cmd runs the --nj shards of stages 1 and 3 (local processes, or Slurm jobs with
  --cmd \"slurm --mem 4G ...\"); each training of stages 2 and 4 is one job of --train-cmd on --nnodes
  nodes with --ngpu GPUs each (speechunits launch; logs <exp-dir>/log/iter<N>.log, iter<N>.slurm.log)."

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
if [[ -z "$train_set" && ( $stage -le 4 && $stop_stage -ge 1 ) ]]; then
  echo "$0: give the training data dir with --train-set" >&2
  exit 1
fi
[[ -n "$cmd" ]] || { echo "$0: --cmd is empty (local, or e.g. \"slurm --mem 4G\")" >&2; exit 1; }
[[ -n "$train_cmd" ]] || { echo "$0: --train-cmd is empty (local, or e.g. \"slurm --time 48:00:00\")" >&2; exit 1; }
[[ "$ngpu" =~ ^[0-9]+$ ]] || { echo "$0: --ngpu must be a non-negative integer, got '$ngpu'" >&2; exit 1; }
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nnodes must be a positive integer, got '$nnodes'" >&2; exit 1; }
log_dir="$exp_dir/log"
sets="$train_set $valid_set"

targets() {  # ITER FEATURE-ARGS...: frame targets of every set, codebook fitted on the train set
  local it="$1" k="$2"; shift 2
  local out="$exp_dir/targets$it"
  run_logged "$log_dir/targets$it.$train_set.log" speechunits frame-units "$@" --data "$data_root/$train_set" \
    --out "$out/$train_set" --k "$k" --max-frames "$max_frames" --nj "$nj" --cmd "$cmd" --device "$device"
  if [[ -n "$valid_set" ]]; then
    run_logged "$log_dir/targets$it.$valid_set.log" speechunits frame-units "$@" --data "$data_root/$valid_set" \
      --out "$out/$valid_set" --codebook "$out/$train_set/codebook.pt" --nj "$nj" --cmd "$cmd" --device "$device"
  fi
}

train() {  # ITER CONFIG OPTS: speechunits train-hubert through speechunits launch (--train-cmd, --ngpu, --nnodes)
  local it="$1" config="$2" opts="$3"
  local out="$exp_dir/iter$it"
  local args=(train-hubert --config "$config" --out-dir "$out" --resume auto)
  [[ "$device" != auto ]] && args+=(--device "$device")   # options before the KEY=VALUE overrides
  args+=(task.data="$data_root/$train_set" task.targets="$exp_dir/targets$it/$train_set")
  if [[ -n "$valid_set" ]]; then
    args+=(task.valid_data="$data_root/$valid_set" task.valid_targets="$exp_dir/targets$it/$valid_set")
  fi
  # shellcheck disable=SC2086
  run_logged "$log_dir/iter$it.log" speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --log "$log_dir/iter$it.slurm.log" -- "${args[@]}" $opts
}

if stage_begin 1 "iteration-1 targets: MFCC k-means (k=$k1) of $sets"; then
  targets 1 "$k1" --features mfcc
fi

if stage_begin 2 "HuBERT iteration 1 on $train_set"; then
  need "$exp_dir/targets1/$train_set/units.jsonl" 1
  train 1 "$iter1_config" "$iter1_opts"
fi

if stage_begin 3 "iteration-2 targets: k-means (k=$k2) of layer $iter2_layer of iteration 1"; then
  need "$exp_dir/iter1/model.pt" 2
  targets 2 "$k2" --model "$exp_dir/iter1/model.pt" --layer "$iter2_layer"
fi

if stage_begin 4 "HuBERT iteration 2 on $train_set"; then
  need "$exp_dir/targets2/$train_set/units.jsonl" 3
  train 2 "$iter2_config" "$iter2_opts"
fi

if stage_begin 5 "phone-purity probe on ${probe_set:-(no --probe-set)}"; then
  if [[ -z "$probe_set" || -z "$alignments" ]]; then
    echo "stage 5: skipped, the probe needs --probe-set and --alignments (phone TextGrids)"
  else
    systems=(--system logmel=logmel --system mfcc=mfcc)
    for it in 1 2; do
      [[ -f "$exp_dir/iter$it/model.pt" ]] && systems+=(--system "hubert-iter$it=$exp_dir/iter$it/model.pt")
    done
    for s in $probe_systems; do systems+=(--system "$s"); done
    run_logged "$log_dir/probe.log" speechunits probe-phones "${systems[@]}" --data "$data_root/$probe_set" \
      --alignments "$alignments" --tier "$tier" --k "$probe_k" --max-utts "$probe_utts" --device "$device" \
      --json "$exp_dir/probe.json" --markdown "$exp_dir/probe.md" --plot "$exp_dir/probe.png"
    cat "$exp_dir/probe.md"
  fi
fi
