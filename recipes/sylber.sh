#!/usr/bin/env bash
# Sylber syllable units: the corpus-agnostic stages (ESPnet TEMPLATE style).
#
# Called by egs/<corpus>/run.sh from that directory, after its stage 0 (data prep) wrote
# Kaldi data dirs <data-root>/<set>/. Relative paths are relative to the caller's cwd.
# Every stage calls a `speechunits` command; those skip outputs that are already complete
# for the same configuration (provenance.json) and training resumes from its last
# checkpoint, so rerunning a stage is cheap and a killed stage continues where it stopped.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"
RECIPES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Options (--name value, Kaldi style; see utils/parse_options.sh)
stage=1            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel jobs for segmentation / tokenization
cmd=local          # how those jobs run: local | "slurm --mem 4G --time 2:00:00 ..." (--cmd of the sharded commands)
train_cmd=local    # how each training runs: local | "slurm --time 48:00:00 ..." (speechunits launch --cmd)
ngpu=0             # GPUs per node for training (>1: DDP, torchrun)
nnodes=1           # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=auto        # auto | cpu | cuda: device for training and tokenization
data_root=data     # holds one Kaldi data dir per set: <data-root>/<set>/
exp_dir=exp/sylber # outputs: segments, models, units, logs, RESULTS.md
train_set=""       # data dir name(s) of the training audio, space-separated (stages 1-3; k-means in 5 on the first)
dev_sets=""        # space-separated data dir names (shift tuning in 6)
test_sets=""       # space-separated data dir names scored in 6
stage1_config="$RECIPES/conf/sylber_stage1.yaml"  # training config of stage 2 (Sylber stage 1)
stage2_config="$RECIPES/conf/sylber_stage2.yaml"  # training config of stage 3 (Sylber stage 2)
stage1_opts=""     # extra KEY=VALUE overrides for Sylber stage 1 (e.g. "max_steps=1000")
stage2_opts=""     # extra KEY=VALUE overrides for Sylber stage 2
init=""            # local HuBERT checkpoint (fairseq .pt / HF dir) to start stage 1 from
sylber_ckpt=""     # released Sylber checkpoint: skips training (stages 2-3) and is tokenized instead
batch_seconds=60   # padded audio seconds per encoder batch when tokenizing
num_clusters=0     # k of the k-means codebook (stage 5); 0 skips stage 5
cluster_opts=""    # extra flags for `speechunits cluster` (e.g. "--max-samples 1000000 --metric cosine")
alignments=""      # dir searched for <utt-id>.TextGrid references (stage 6; empty: skip 6)
tier=syllables     # TextGrid tier holding the reference syllables
syllabify_phones=false  # true: stage 6 builds the reference syllables from the phone tier (ARPAbet) instead of --tier
phone_tier=phones  # phone tier syllabified with --syllabify-phones true (syllables stay inside the 'words' tier)
matching=max       # boundary matching in stage 6: max (maximum one-to-one) | greedy (nearest pairs first)
tolerance=0.05     # boundary tolerance in seconds (stage 6)
tune_shift=false   # true: pick the boundary shift on the first dev set, then apply it
tune_thresholds=false  # true: pick each trained model's norm/merge thresholds on the first dev set (needs --alignments)
bootstrap_opts=""  # extra flags for `speechunits bootstrap-segments` (see its --help)

help_message="Usage: recipes/sylber.sh [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  bootstrap segments: speechunits bootstrap-segments on the train, dev and test sets
       -> <exp-dir>/bootstrap/<set>/ (unit sets of segments)
  2  Sylber stage 1: speechunits train-sylber (regression onto segment-averaged teacher
       features, bootstrap segments) -> <exp-dir>/stage1/model.pt
  3  Sylber stage 2: speechunits train-sylber (online greedy segments from the teacher,
       adaptive norm threshold) -> <exp-dir>/stage2/model.pt
     With --tune-thresholds true, stages 2 and 3 end with speechunits tune-segmentation on the
       first dev set -> <exp-dir>/stage<N>/model.tuned.pt (+ tune.json, tune.png); stage 3
       starts from, and stages 4-6 use, the tuned checkpoints.
  4  tokenize dev and test sets (and the train set when --num-clusters > 0) with the stage-1
       and final models -> <exp-dir>/units/<model>/<set>/ (segments + embeddings)
  5  k-means codebook on the (first) train set's final-model embeddings, then quantize every
       tokenized set -> <exp-dir>/kmeans<k>.pt, units filled in place
  6  evaluate: speechunits eval-boundaries of every system (bootstrap, stage 1, stage 2)
       on the test sets -> <exp-dir>/eval/*.json, <exp-dir>/RESULTS.<set>.md + scores.<set>.png,
       gathered in <exp-dir>/RESULTS.md
Jobs: --cmd runs the --nj shards of stages 1 and 4 (local processes, or Slurm jobs with
  --cmd \"slurm --mem 4G ...\"); each training of stages 2-3 is one job of --train-cmd on --nnodes
  nodes with --ngpu GPUs each (speechunits launch; logs <exp-dir>/log/stage<N>.log, stage<N>.slurm.log).
With --sylber-ckpt the released model replaces stages 2-3 (its units are named 'sylber').
Several --train-set names (\"a b\") are each bootstrapped in stage 1 and trained on together in
stages 2-3 (task.data / task.segments become YAML lists; utterance ids must be unique across them)."

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
if [[ -z "$dev_sets$test_sets" ]]; then
  echo "$0: give the data sets to segment with --test-sets (and --dev-sets)" >&2
  exit 1
fi
[[ -n "$cmd" ]] || { echo "$0: --cmd is empty (local, or e.g. \"slurm --mem 4G\")" >&2; exit 1; }
[[ -n "$train_cmd" ]] || { echo "$0: --train-cmd is empty (local, or e.g. \"slurm --time 48:00:00\")" >&2; exit 1; }
[[ "$ngpu" =~ ^[0-9]+$ ]] || { echo "$0: --ngpu must be a non-negative integer, got '$ngpu'" >&2; exit 1; }
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nnodes must be a positive integer, got '$nnodes'" >&2; exit 1; }
log_dir="$exp_dir/log"
eval_sets="$dev_sets $test_sets"

if [[ "$tune_thresholds" == true && ( -z "$alignments" || -z "$dev_sets" ) ]]; then
  echo "$0: --tune-thresholds true needs --alignments and --dev-sets (thresholds are picked on a labelled dev set)" >&2
  exit 1
fi

for set in $train_set $eval_sets; do
  if (( stage <= 1 && 1 <= stop_stage )) && [[ ! -f "$data_root/$set/provenance.json" ]]; then
    echo "$0: data dir $data_root/$set is missing or incomplete; run stage 0 of the egs/<corpus>/run.sh first" >&2
    exit 1
  fi
done

# The models whose units are tokenized and scored (name:checkpoint).
if [[ -n "$sylber_ckpt" ]]; then
  models="sylber:$sylber_ckpt"
  final=sylber
elif [[ -n "$train_set" ]]; then
  suffix=""
  [[ "$tune_thresholds" == true ]] && suffix=".tuned"
  models="stage1:$exp_dir/stage1/model$suffix.pt stage2:$exp_dir/stage2/model$suffix.pt"
  final=stage2
else
  models=""
  final=""
  echo "$0: no --train-set and no --sylber-ckpt: only the bootstrap segmenter is run and scored (stages 1 and 6)"
fi

yaml_list() {  # PATH...: one path as is, several as a quoted YAML list ['a','b'] (a KEY=VALUE override value)
  if (( $# == 1 )); then printf '%s' "$1"; return; fi
  local out="" p q="'"
  for p in "$@"; do out+="${out:+,}$q${p//$q/$q$q}$q"; done
  printf '[%s]' "$out"
}
train_data=() train_segments=()  # the train sets' data dirs and bootstrap unit sets
for set in $train_set; do
  train_data+=("$data_root/$set")
  train_segments+=("$exp_dir/bootstrap/$set")
done
train_first="${train_set%% *}"

train() {  # OUT CONFIG OVERRIDES...: speechunits train-sylber through speechunits launch (--train-cmd,
  # --ngpu GPUs per node on --nnodes nodes: a plain process, torchrun, or one Slurm job)
  local out="$1" config="$2"; shift 2
  local name; name="$(basename "$out")"
  local args=(train-sylber --config "$config" --out-dir "$out" --resume auto)
  [[ "$device" != auto ]] && args+=(--device "$device")
  run_logged "$log_dir/$name.log" speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --log "$log_dir/$name.slurm.log" -- "${args[@]}" "$@"
}

if stage_begin 1 "bootstrap syllable segments of: $train_set $eval_sets"; then
  for set in $train_set $eval_sets; do
    out="$exp_dir/bootstrap/$set"
    # the --nj shards run through --cmd (logs $out/log/bootstrap-segments.<J>.log), then merge; a complete
    # $out is skipped at once, and a rerun only runs the unfinished shards
    # shellcheck disable=SC2086
    run_logged "$log_dir/bootstrap.$set.log" speechunits bootstrap-segments --data "$data_root/$set" --out "$out" \
      --nj "$nj" --cmd "$cmd" $bootstrap_opts
    echo "stage 1: segments of $set in $out"
  done
fi

tune_model() {  # DIR: with --tune-thresholds true, DIR/model.tuned.pt = DIR/model.pt with dev-tuned thresholds
  local dir="$1"
  [[ "$tune_thresholds" == true ]] || return 0
  [[ "$dir/model.tuned.pt" -nt "$dir/model.pt" ]] && { echo "$dir/model.tuned.pt is up to date"; return 0; }
  local refs=(--tier "$tier")
  [[ "$syllabify_phones" == true ]] && refs=(--syllabify-phones --phone-tier "$phone_tier")
  run_logged "$log_dir/tune.$(basename "$dir").log" speechunits tune-segmentation --model "$dir/model.pt" \
    --data "$data_root/${dev_sets%% *}" --alignments "$alignments" "${refs[@]}" --tolerance "$tolerance" \
    --matching "$matching" --device "$device" --json "$dir/tune.json" --plot "$dir/tune.png" --export "$dir/model.tuned.pt"
}

if [[ -z "$sylber_ckpt" && -n "$train_set" ]] && stage_begin 2 "Sylber stage 1 training on $train_set"; then
  for seg in "${train_segments[@]}"; do need "$seg/units.jsonl" 1; done
  # shellcheck disable=SC2086
  train "$exp_dir/stage1" "$stage1_config" task.data="$(yaml_list "${train_data[@]}")" \
    task.segments="$(yaml_list "${train_segments[@]}")" ${init:+task.init="$init"} $stage1_opts
  tune_model "$exp_dir/stage1"
fi

if [[ -z "$sylber_ckpt" && -n "$train_set" ]] && stage_begin 3 "Sylber stage 2 training on $train_set"; then
  need "$exp_dir/stage1/model$suffix.pt" 2
  # shellcheck disable=SC2086
  train "$exp_dir/stage2" "$stage2_config" task.data="$(yaml_list "${train_data[@]}")" \
    task.init="$exp_dir/stage1/model$suffix.pt" $stage2_opts
  tune_model "$exp_dir/stage2"
fi

if [[ -n "$models" ]] && stage_begin 4 "tokenize $eval_sets with the models ($models)"; then
  tok_sets="$eval_sets"
  if (( num_clusters > 0 )) && [[ -n "$train_set" ]]; then tok_sets="$train_set $tok_sets"; fi
  for m in $models; do
    name="${m%%:*}" ckpt="${m#*:}"
    need "$ckpt" "$([[ $name == stage1 ]] && echo 2 || echo 3)"
    for set in $tok_sets; do
      # stage-1 units are only scored, never clustered: skip its train set
      [[ "$name" != "$final" && " $train_set " == *" $set "* && " $eval_sets " != *" $set "* ]] && continue
      run_logged "$log_dir/tokenize.$name.$set.log" speechunits tokenize --model "$ckpt" \
        --data "$data_root/$set" --out "$exp_dir/units/$name/$set" --nj "$nj" --cmd "$cmd" --device "$device" \
        --batch-seconds "$batch_seconds"
    done
  done
fi

if [[ -n "$models" && -n "$train_set" ]] && (( num_clusters > 0 )) && stage_begin 5 "k-means ($num_clusters clusters) and quantization"; then
  need "$exp_dir/units/$final/$train_first/units.jsonl" 4
  codebook="$exp_dir/kmeans$num_clusters.pt"
  # shellcheck disable=SC2086
  run_logged "$log_dir/cluster.log" speechunits cluster --units "$exp_dir/units/$final/$train_first" \
    --k "$num_clusters" --out "$codebook" --device "$device" $cluster_opts
  for set in $train_set $eval_sets; do
    run_logged "$log_dir/quantize.$set.log" speechunits quantize --units "$exp_dir/units/$final/$set" \
      --codebook "$codebook"
  done
fi

if stage_begin 6 "evaluate boundaries on: $test_sets"; then
  if [[ -z "$alignments" ]]; then
    echo "stage 6: skipped, no --alignments given (reference TextGrids are needed to score boundaries)"
  else
    systems="bootstrap:$exp_dir/bootstrap"
    for m in $models; do systems="$systems ${m%%:*}:$exp_dir/units/${m%%:*}"; done
    dev_first="${dev_sets%% *}"
    refs_note="tier '$tier'"
    [[ "$syllabify_phones" == true ]] && refs_note="phone tier '$phone_tier' syllabified"
    for set in $test_sets; do
      ref="$alignments"   # searched recursively for <utt-id>.TextGrid (dev and test sets alike)
      rows=()
      for s in $systems; do
        name="${s%%:*}" dir="${s#*:}"
        [[ -f "$dir/$set/units.jsonl" ]] || { echo "stage 6: no $name units of $set ($dir/$set); not scored"; continue; }
        eval_cmd=(speechunits eval-boundaries --units "$dir/$set" --alignments "$ref" --tier "$tier"
                  --tolerance "$tolerance" --matching "$matching" --json "$exp_dir/eval/$name.$set.json")
        case "$syllabify_phones" in
          true) eval_cmd+=(--syllabify-phones --phone-tier "$phone_tier") ;;
          false) ;;
          *) echo "$0: --syllabify-phones must be true or false, got '$syllabify_phones'" >&2; exit 1 ;;
        esac
        if [[ "$tune_shift" == true ]]; then
          [[ -n "$dev_first" ]] || { echo "$0: --tune-shift true needs --dev-sets" >&2; exit 1; }
          eval_cmd+=(--tune-shift-on "$dir/$dev_first")
        fi
        run_logged "$log_dir/eval.$name.$set.log" "${eval_cmd[@]}"
        rows+=("$name=$exp_dir/eval/$name.$set.json")
      done
      run_logged "$log_dir/results.$set.log" speechunits results-table --out "$exp_dir/RESULTS.$set.md" \
        --plot "$exp_dir/scores.$set.png" --title "Syllable boundaries on $set ($exp_dir)" \
        --notes "Written by recipes/sylber.sh stage 6 on $(date '+%F %T'). References: $refs_note under $ref." \
        "${rows[@]}"
    done
    for set in $test_sets; do cat "$exp_dir/RESULTS.$set.md"; echo; done > "$exp_dir/RESULTS.md.tmp.$$"
    mv "$exp_dir/RESULTS.md.tmp.$$" "$exp_dir/RESULTS.md"
    echo "stage 6: results in $exp_dir/RESULTS.md"
  fi
fi
