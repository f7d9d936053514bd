#!/usr/bin/env bash
# The unit-LM experiment driver (in the spirit of GSLM's ulm/): the same audio tokenized three
# ways -> packed token data -> one Transformer LM and one n-gram per tokenizer at an equal
# training-token budget -> held-out perplexity and zero-resource probes -> spoken continuation
# -> lm/exp/<name>/RESULTS.md. The code is in speechunits.lm; every stage calls a `speechunits`
# command, and those skip outputs that are already complete (training resumes with --resume auto).
#   bash lm/run.sh                                     # after bash egs/synth/run.sh --unit2speech true
#   bash lm/run.sh --stage 3 --token-budget 2000000    # retrain with a larger budget
#   bash lm/run.sh --probe-dir /data/zerospeech2021     # the official sWUGGY/sBLIMP dev sets
# Works from any directory: relative paths given as options are taken from the caller's
# directory, the defaults from this one.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./cmd.sh || exit 1   # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                  # first stage to run
stop_stage=100           # last stage to run
name=synth               # experiment name: outputs in exp/<name>/
exp_root=exp             # experiments live in <exp-root>/<name>/
nj=2                     # parallel jobs (synthesis, tokenization)
device=auto              # auto | cpu | cuda
ngpu=0                   # GPUs per node for each LM training (>1: DDP, torchrun)
nnodes=1                 # nodes per LM training (>1: multi-node DDP, needs a --train-cmd such as slurm)
train_nj=1               # >1: train this many LMs at once on the CPU, each on nproc / train_nj threads
data_root=../egs/synth/data   # <data-root>/<set>/ data dirs (made by egs/*/run.sh stage 0)
train_set=train-clean-100     # LM training audio
valid_set=dev-clean           # held out: validation during training
test_sets=test-clean          # held out: perplexity of each (the first: the table's columns and the
                              # continuation prompts); e.g. "test-clean so762" adds a real-speech set
tokenizers="sylber bootstrap frames"   # the rows (any subset, in this order)
sylber_model=../egs/synth/exp/sylber/stage2/model.tuned.pt  # Sylber checkpoint: syllable segments and features
sylber_codebook=../egs/synth/exp/sylber/kmeans500.pt        # syllable k-means (empty: --num-clusters on the train set)
num_clusters=500         # k of the syllable codebooks (sylber without --sylber-codebook, and bootstrap)
frame_model=""           # encoder of the frame units (empty: --sylber-model)
frame_layer=3            # its layer (1-based)
frame_codebook=../egs/synth/exp/unit2speech/units/frames/train-clean-100/codebook.pt  # (empty: --num-frame-units)
num_frame_units=100      # k of the frame codebook when it is trained here
frame_dedup=true         # frame units as runs (deduplicated, as stored) or one token per 20 ms frame
bpe_vocab=0              # >0: sentencepiece BPE over units with this vocabulary (trained on the train set)
probe_dir=""             # ZeroSpeech 2021 root with lexical/<split> and syntactic/<split> (+ gold.csv);
                         # empty: stage 0 synthesizes sWUGGY/sBLIMP-style probes into exp/<name>/probes
probe_split=dev          # dev | test (the official test sets come without gold.csv: scores only)
probe_pairs=800          # synthetic probes: pairs per task (the vocabulary allows about 820 lexical ones;
                         # 200 gave CIs of about +-5 points, 800 about +-2.5)
probe_score=sum          # sum | mean: summed or length-normalised log-probability decides a pair
lm_config=conf/lm_small.yaml   # train-lm config (model size, task.batch_tokens, lr)
train_opts=""            # KEY=VALUE overrides of every LM's training
token_budget=1000000     # training tokens per LM (equal budget; train-lm --token-budget sets max_steps)
ngram_order=3            # order of the smoothed n-gram baseline
lm_model=best            # best | last: stages 4-5 use <lm>/model.best.pt (lowest validation NLL) when it
                         # exists, or the last step's model.pt
vocoder=../egs/synth/exp/unit2speech/vocoder_syllables/vocoder.pt  # syllable unit vocoder (duration predictor)
continue_tokenizer=sylber # whose LM continues the prompts (its units must be the vocoder's)
num_continuations=10     # test prompts continued
prompt_seconds=1.5       # prompt length
max_new_tokens=15        # LM tokens sampled per continuation
temperature=0.8
top_p=0.9
seed=0

help_message="Usage: bash lm/run.sh [options]
Stages:
  0  probes: speechunits synth-corpus --layout zr2021 (sWUGGY/sBLIMP-style pairs spoken by the corpus
     voices, --probe-pairs per task) unless --probe-dir, then prepare-data --corpus zr2021
       -> exp/<name>/data/{lexical,syntactic}
  1  unit sets of train/valid/test sets and both probe sets for every tokenizer (--tokenizers):
       sylber    tokenize --model --sylber-model, quantize with --sylber-codebook
       bootstrap bootstrap-segments, tokenize --segments (Sylber features pooled over them),
                 k-means (--num-clusters) on train, quantize
       frames    frame-units of layer --frame-layer (codebook --frame-codebook)
       -> exp/<name>/units/<tokenizer>/<set>
  2  packing: speechunits lm-pack (frames deduplicated with --frame-dedup true; BPE with --bpe-vocab)
       -> exp/<name>/<tokenizer>/packed/<set>.{bin,idx,items.tsv,json}
  3  training: speechunits train-lm (--lm-config, --token-budget tokens each) and lm-ngram (--ngram-order)
       -> exp/<name>/<tokenizer>/lm/model.pt (+ model.best.pt), exp/<name>/<tokenizer>/ngram.json
  4  scoring: lm-score of the test sets (perplexity) and the probes with both models, lm-probe
       -> exp/<name>/<tokenizer>/scores/<model>/<set>/, exp/<name>/<tokenizer>/probes/<model>.<task>.json
  5  continuation: lm-continue of --num-continuations prompts of the first test set with the --continue-tokenizer LM,
     synthesize with --vocoder (--durations predicted) -> exp/<name>/continuation/
  6  exp/<name>/RESULTS.md (+ continuation.png after stage 5): speechunits lm-results
Jobs (defaults from lm/cmd.sh, SPEECHUNITS_CMD_BACKEND=local|slurm; site settings in lm/conf/slurm.conf):
  --cmd runs the --nj shards of stages 0, 1 and 5 (local, or e.g. --cmd \"slurm --mem 4G\"); each LM
  training of stage 3 is one job of --train-cmd on --nnodes nodes with --ngpu GPUs each (speechunits launch)."

. ../utils/parse_options.sh
. ../utils/stages.sh
. ../utils/path.sh

fail() { echo "$0: $*" >&2; exit 1; }
need() {  # PATH STAGE-THAT-MAKES-IT
  [[ -e "$1" ]] || fail "missing $1; it is made by stage $2 (rerun with --stage $2)"
}

[[ $# -eq 0 ]] || fail "unexpected arguments: $*"
user_paths "$CALLER_DIR" exp_root data_root sylber_model sylber_codebook frame_model frame_codebook probe_dir lm_config vocoder
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || fail "--nj must be a positive integer, got '$nj'"
[[ "$ngpu" =~ ^[0-9]+$ ]] || fail "--ngpu must be a non-negative integer, got '$ngpu'"
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || fail "--nnodes must be a positive integer, got '$nnodes'"
[[ -n "$cmd" ]] || fail "--cmd is empty (local, or e.g. \"slurm --mem 4G\")"
[[ -n "$train_cmd" ]] || fail "--train-cmd is empty (local, or e.g. \"slurm --time 24:00:00\")"
[[ "$token_budget" =~ ^[1-9][0-9]*$ ]] || fail "--token-budget must be a positive integer, got '$token_budget'"
[[ "$probe_score" == sum || "$probe_score" == mean ]] || fail "--probe-score must be sum or mean, got '$probe_score'"
[[ "$lm_model" == best || "$lm_model" == last ]] || fail "--lm-model must be best or last, got '$lm_model'"
for t in $tokenizers; do
  case "$t" in sylber|bootstrap|frames) ;; *) fail "--tokenizers: unknown '$t' (sylber, bootstrap, frames)" ;; esac
done
[[ -n "$frame_model" ]] || frame_model="$sylber_model"

exp="$exp_root/$name"
log="$exp/log"
dev=(); [[ "$device" == auto ]] || dev=(--device "$device")
probe_tasks="lexical syntactic"
sets="$train_set $valid_set $test_sets $probe_tasks"
test_set="${test_sets%% *}"   # the first: RESULTS.md's columns and the continuation prompts
[[ -n "$test_set" ]] || fail "--test-sets is empty"
lm_file() {  # TOKENIZER -> the LM file of stages 4-5 (see --lm-model)
  local dir="$exp/$1/lm"
  if [[ "$lm_model" == best && -f "$dir/model.best.pt" ]]; then echo "$dir/model.best.pt"; else echo "$dir/model.pt"; fi
}
set_data() {  # SET -> its data dir
  case "$1" in lexical|syntactic) echo "$exp/data/$1" ;; *) echo "$data_root/$1" ;; esac
}

if stage_begin 0 "probes (${probe_dir:-synthetic, $probe_pairs pairs per task}) and their data dirs"; then
  root="$probe_dir"
  if [[ -z "$root" ]]; then
    run_logged "$log/synth.probes.log" speechunits synth-corpus --layout zr2021 --out "$exp/probes" \
      --num-pairs "$probe_pairs" --seed "$seed" --nj "$nj" --cmd "$cmd"
    root="$exp/probes/zerospeech2021"
  fi
  for task in $probe_tasks; do
    run_logged "$log/prepare.$task.log" speechunits prepare-data --corpus zr2021 --corpus-dir "$root" \
      --split "$task/$probe_split" --out "$exp/data/$task"
  done
  printf '%s\n' "$root" > "$exp/data/probe_root"
fi

if stage_begin 1 "unit sets ($tokenizers) of: $sets"; then
  for set in $sets; do need "$(set_data "$set")" 0; done
  for t in $tokenizers; do
    u="$exp/units/$t"
    case "$t" in
      sylber)
        codebook="$sylber_codebook"
        for set in $sets; do
          run_logged "$log/tokenize.sylber.$set.log" speechunits tokenize --model "$sylber_model" \
            --data "$(set_data "$set")" --out "$u/$set" --nj "$nj" --cmd "$cmd" "${dev[@]}"
        done
        if [[ -z "$codebook" ]]; then
          codebook="$u/kmeans$num_clusters.pt"
          run_logged "$log/cluster.sylber.log" speechunits cluster --units "$u/$train_set" --k "$num_clusters" \
            --out "$codebook" "${dev[@]}"
        fi
        for set in $sets; do
          run_logged "$log/quantize.sylber.$set.log" speechunits quantize --units "$u/$set" --codebook "$codebook"
        done ;;
      bootstrap)
        for set in $sets; do
          run_logged "$log/bootstrap.$set.log" speechunits bootstrap-segments --data "$(set_data "$set")" \
            --out "$exp/units/bootstrap_segments/$set" --nj "$nj" --cmd "$cmd"
          run_logged "$log/tokenize.bootstrap.$set.log" speechunits tokenize --model "$sylber_model" \
            --data "$(set_data "$set")" --segments "$exp/units/bootstrap_segments/$set" --out "$u/$set" \
            --nj "$nj" --cmd "$cmd" "${dev[@]}"
        done
        run_logged "$log/cluster.bootstrap.log" speechunits cluster --units "$u/$train_set" --k "$num_clusters" \
          --out "$u/kmeans$num_clusters.pt" "${dev[@]}"
        for set in $sets; do
          run_logged "$log/quantize.bootstrap.$set.log" speechunits quantize --units "$u/$set" \
            --codebook "$u/kmeans$num_clusters.pt"
        done ;;
      frames)
        codebook="$frame_codebook"
        if [[ -z "$codebook" ]]; then
          run_logged "$log/frame_units.$train_set.log" speechunits frame-units --model "$frame_model" \
            --layer "$frame_layer" --data "$(set_data "$train_set")" --k "$num_frame_units" --out "$u/$train_set" \
            --nj "$nj" --cmd "$cmd" "${dev[@]}"
          codebook="$u/$train_set/codebook.pt"
        fi
        for set in $sets; do
          run_logged "$log/frame_units.$set.log" speechunits frame-units --model "$frame_model" --layer "$frame_layer" \
            --data "$(set_data "$set")" --codebook "$codebook" --out "$u/$set" --nj "$nj" --cmd "$cmd" "${dev[@]}"
        done ;;
    esac
  done
fi

if stage_begin 2 "packed token data"; then
  for t in $tokenizers; do
    dedup=false; [[ "$t" == frames ]] && dedup="$frame_dedup"
    p="$exp/$t/packed"
    bpe=(); (( bpe_vocab > 0 )) && bpe=(--bpe-vocab "$bpe_vocab")
    for set in $sets; do
      need "$exp/units/$t/$set/units.jsonl" 1
      run_logged "$log/pack.$t.$set.log" speechunits lm-pack --units "$exp/units/$t/$set" --out "$p/$set" \
        --dedup "$dedup" "${bpe[@]}"
      (( bpe_vocab > 0 )) && bpe=(--bpe-model "$p/$train_set.bpe.model")
    done
  done
fi

if stage_begin 3 "LM training ($token_budget tokens each) and $ngram_order-gram baselines: $tokenizers"; then
  # each training one `speechunits launch` (a plain process with --train-cmd local and --ngpu <= 1); local ones
  # share this machine's cores (OMP_NUM_THREADS), a cluster job has its own (--num-threads of --train-cmd)
  threads=$(( $(nproc) / (train_nj > 0 ? train_nj : 1) )); (( threads >= 1 )) || threads=1
  launch=(speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes")
  [[ "$train_cmd" == local || "$train_cmd" == "local "* ]] && launch=(env "OMP_NUM_THREADS=$threads" "${launch[@]}")
  pool_init "$train_nj"
  for t in $tokenizers; do
    p="$exp/$t/packed"
    need "$p/$train_set.json" 2
    run_logged "$log/ngram.$t.log" speechunits lm-ngram --train "$p/$train_set" --order "$ngram_order" \
      --out "$exp/$t/ngram.json"
    (( train_nj > 1 )) && echo "training $t in the background on $threads thread(s) (log: $log/train.$t.log)"
    # shellcheck disable=SC2086  # the overrides are words
    pool_run "$log/train.$t.log" "${launch[@]}" --log "$log/train.$t.slurm.log" -- \
      train-lm --config "$lm_config" --out-dir "$exp/$t/lm" --resume auto "${dev[@]}" --token-budget "$token_budget" "task.train=$p/$train_set" "task.valid=$p/$valid_set" \
      $train_opts
  done
  pool_wait || fail "a training failed; see $log/train.<tokenizer>.log"
fi

if stage_begin 4 "scoring: perplexity of $test_sets and the probes (LM and n-gram)"; then
  for t in $tokenizers; do
    for model in lm ngram; do
      file="$(lm_file "$t")"; [[ "$model" == ngram ]] && file="$exp/$t/ngram.json"
      need "$file" 3
      for set in $test_sets $probe_tasks; do
        run_logged "$log/score.$t.$model.$set.log" speechunits lm-score --model "$file" \
          --data "$exp/$t/packed/$set" --out "$exp/$t/scores/$model/$set" "${dev[@]}"
      done
      root="$(cat "$exp/data/probe_root")"
      for task in $probe_tasks; do
        gold="$root/$task/$probe_split/gold.csv"
        if [[ ! -f "$gold" ]]; then
          echo "stage 4: no $gold (the official test sets have none): scores only, in $exp/$t/scores/$model/$task"
          continue
        fi
        run_logged "$log/probe.$t.$model.$task.log" speechunits lm-probe --gold "$gold" --task "$task" \
          --scores "$exp/$t/scores/$model/$task/scores.jsonl" --score "$probe_score" \
          --out "$exp/$t/probes/$model.$task.json"
      done
    done
  done
fi

if stage_begin 5 "continuation: $num_continuations $test_set prompts, $continue_tokenizer LM, vocoder $vocoder"; then
  need "$(lm_file "$continue_tokenizer")" 3
  [[ -f "$vocoder" ]] || fail "--vocoder: no $vocoder (train it with egs/synth/run.sh --unit2speech true)"
  c="$exp/continuation"
  run_logged "$log/continue.log" speechunits lm-continue --model "$(lm_file "$continue_tokenizer")" \
    --units "$exp/units/$continue_tokenizer/$test_set" --out "$c" --num-utts "$num_continuations" \
    --prompt-seconds "$prompt_seconds" --max-new-tokens "$max_new_tokens" --temperature "$temperature" \
    --top-p "$top_p" --seed "$seed" "${dev[@]}"
  run_logged "$log/continue.synth.log" speechunits synthesize --model "$vocoder" --units "$c/units" \
    --out "$c/synth" --durations predicted --nj 1 --cmd "$cmd" "${dev[@]}"
  echo "stage 5: prompts (real audio) in $c/prompts/, vocoded prompt and continuation in $c/synth/wav/"
fi

if stage_begin 6 "RESULTS.md"; then
  cont=(); [[ -f "$exp/continuation/continuations.jsonl" ]] && cont=(--continuation "$exp/continuation")
  run_logged "$log/results.log" speechunits lm-results --exp-dir "$exp" --tokenizers "$tokenizers" \
    --test-sets "$test_sets" --train-set "$train_set" --token-budget "$token_budget" "${cont[@]}"
fi
