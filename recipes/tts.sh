#!/usr/bin/env bash
# Capacitron TTS: Tacotron2 with capacity-limited variational prosody, the corpus-agnostic stages
# (ESPnet TEMPLATE style): phonemes -> train every model -> synthesize -> evaluate -> RESULTS.md.
#
# Called by egs/<corpus>/run.sh from that directory, after its stage 0 (data prep) wrote Kaldi
# data dirs <data-root>/<set>/ with transcripts. Relative paths are relative to the caller's cwd.
# Every stage calls a `speechunits` command; those skip outputs that are already complete for
# the same configuration (provenance.json) and training resumes from its last checkpoint
# (--resume auto), so rerunning a stage is cheap and a killed stage continues where it stopped.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"

stage=1              # first stage to run
stop_stage=100       # last stage to run
nj=2                 # parallel jobs (synthesis shards)
cmd=local            # how those jobs run: local | "slurm --mem 4G --time 2:00:00 ..." (--cmd of tts-synthesize)
train_cmd=local      # how each training runs: local | "slurm --time 48:00:00 ..." (speechunits launch --cmd)
ngpu=0               # GPUs per node for training (>1: DDP, torchrun)
nnodes=1             # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
train_nj=1           # >1: train this many models at once, each on nproc / train_nj CPU threads (small CPU runs)
device=auto          # auto | cpu | cuda
data_root=data       # <data-root>/<set>/ Kaldi data dirs with transcripts
exp_dir=exp/tts      # phonemes/, <model>/, synth/, eval/, RESULTS.md, figures/
train_set=""         # data dir name of the training set
valid_set=""         # data dir name of the validation set (also the default style references)
test_set=""          # data dir name of the held-out test set (synthesized and scored)
style_set=""         # data dir name of the style references, dealt round robin over the test texts (empty: the valid set)
configs=""           # the models: space-separated NAME=CONFIG[:KEY=VALUE...] (see above)
train_opts=""        # KEY=VALUE overrides of every model's training (e.g. "max_steps=1000")
frontend=phonemes    # phonemes (espeak-ng) | characters
language=en-us       # espeak-ng language of the phonemes
vocoder=""           # mel vocoder.pt of speechunits train-vocoder (its mel config must be the models'; empty: Griffin-Lim)
judge=""             # judge.pt of speechunits train-judge: CER/WER of the synthesized audio (empty: none)
prosody_labels=""    # utterances.json of speechunits synth-corpus: the references' recorded prosody
                     # (empty: transfer is scored against the reference audio's measured prosody)
temperatures="0.5 1.0"  # prior temperatures of the text-only samples
seeds="0 1 2"        # seeds of the text-only samples (transfer and style use the first)
num_test=100         # test utterances synthesized per row (0: all)
num_prior=""         # test sentences of the prior-sample rows, each once per seed (empty: --num-test)
synth_opts=""        # extra tts-synthesize flags for every row (e.g. "--griffin-lim-iters 60")
figure_model=""      # model of the figures (attention alignment of its transfer row, F0 contours of its
                     # prior samples at every temperature); empty: the last model of --configs

help_message="Usage: recipes/tts.sh --train-set S --valid-set S --test-set S --configs \"NAME=CONF ...\" [options]
  (normally called by egs/<corpus>/run.sh)
Stages:
  1  phonemes of the train/valid/test (and style) sets: speechunits phonemize
       -> <exp-dir>/phonemes/<set>.jsonl
  2  training of every model of --configs: speechunits train-tts, each through speechunits launch
     (--train-cmd, --ngpu GPUs per node on --nnodes nodes; --train-nj N trains N models at once)
       -> <exp-dir>/<name>/model.pt
  3  synthesis of --num-test test utterances per model: speechunits tts-synthesize
       text only (prior samples) of --num-prior sentences at each --temperatures with the --seeds
                                                                      -> <exp-dir>/synth/<name>/text_t<T>/
       prosody transfer (own audio as reference, same text)          -> <exp-dir>/synth/<name>/transfer/
       style transfer (references from --style-set, new text; only models with a prosody
       embedding, as the transfer output's meta.json says)          -> <exp-dir>/synth/<name>/style/
  4  evaluation of every synthesis dir: speechunits tts-evaluate (MCD, FFE, transfer correlation,
     diversity across seeds, attention failures, KL; judge CER with --judge)
       -> <exp-dir>/eval/<name>/<row>.json
  5  the comparison: speechunits tts-results -> <exp-dir>/RESULTS.md and <exp-dir>/figures/
--configs names the models: NAME=CONFIG with optional ':'-separated KEY=VALUE overrides of that
model only (values without ':' or spaces), e.g.
  --configs \"baseline=conf/tts_tacotron2.yaml vt10=conf/tts_capacitron_vt.yaml:task.prosody.capacity=10\"
--style-set defaults to the valid set: held out, and other sentences than the test texts.
Jobs: --cmd runs the --nj shards of each synthesis of stage 3 (local processes, or Slurm jobs with
  --cmd \"slurm --mem 4G ...\"); each training is one job of --train-cmd (logs <exp-dir>/log/train.<name>.log,
  train.<name>.slurm.log)."

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

fail() { echo "$0: $*" >&2; exit 1; }

if [[ $# -ne 0 ]]; then
  fail "unexpected arguments: $*"
fi
if [[ -z "$train_set" || -z "$valid_set" || -z "$test_set" ]]; then
  fail "give --train-set, --valid-set and --test-set (data dir names under --data-root)"
fi
[[ -n "$style_set" ]] || style_set="$valid_set"
if [[ "$style_set" == "$test_set" ]]; then
  fail "--style-set must differ from --test-set: its utterances are dealt round robin over the test texts, so the same set would pair each text with its own audio (that is prosody transfer, already a row)"
fi
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || fail "--nj must be a positive integer, got '$nj'"
[[ "$ngpu" =~ ^[0-9]+$ ]] || fail "--ngpu must be a non-negative integer, got '$ngpu'"
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || fail "--nnodes must be a positive integer, got '$nnodes'"
[[ -n "$cmd" ]] || fail "--cmd is empty (local, or e.g. \"slurm --mem 4G\")"
[[ -n "$train_cmd" ]] || fail "--train-cmd is empty (local, or e.g. \"slurm --time 48:00:00\")"
[[ "$train_nj" =~ ^[1-9][0-9]*$ ]] || fail "--train-nj must be a positive integer, got '$train_nj'"
[[ "$num_test" =~ ^[0-9]+$ ]] || fail "--num-test must be a non-negative integer (0: all), got '$num_test'"
[[ -z "$num_prior" || "$num_prior" =~ ^[0-9]+$ ]] || fail "--num-prior must be a non-negative integer (0: all), got '$num_prior'"
[[ "$frontend" == phonemes || "$frontend" == characters ]] || fail "--frontend must be phonemes or characters, got '$frontend'"
[[ -n "${temperatures// /}" ]] || fail "give at least one prior temperature with --temperatures"
for t in $temperatures; do
  [[ "$t" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "--temperatures: '$t' is not a non-negative number"
done
[[ -n "${seeds// /}" ]] || fail "give at least one seed with --seeds"
for s in $seeds; do
  [[ "$s" =~ ^[0-9]+$ ]] || fail "--seeds: '$s' is not a non-negative integer"
done
seed_list="$(tr -s ' ' '\n' <<< "$seeds" | awk 'NF' | paste -sd, -)"   # "0 1 2" -> 0,1,2 (tts-synthesize --seeds)
first_seed="${seed_list%%,*}"

# The models: NAME=CONFIG[:KEY=VALUE...] -> names in order, their config and their own overrides.
names=()
declare -A model_config=() model_opts=()
for entry in $configs; do
  [[ "$entry" == *=* ]] || fail "--configs: '$entry' is not NAME=CONFIG[:KEY=VALUE...]"
  name="${entry%%=*}"
  rest="${entry#*=}"
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
    || fail "--configs: model name '$name' in '$entry' must be letters, digits, '_', '.', '-' (it names a directory)"
  [[ -z "${model_config[$name]+set}" ]] || fail "--configs: model name '$name' is given twice"
  conf="${rest%%:*}"
  [[ -n "$conf" ]] || fail "--configs: no config file in '$entry'"
  [[ -f "$conf" ]] || fail "--configs: config file of model '$name' not found: $conf"
  opts=""
  if [[ "$rest" == *:* ]]; then
    opts="${rest#*:}"
    for kv in ${opts//:/ }; do
      [[ "$kv" == ?*=* ]] || fail "--configs: override '$kv' of model '$name' is not KEY=VALUE"
    done
  fi
  names+=("$name")
  model_config[$name]="$conf"
  model_opts[$name]="${opts//:/ }"
done
(( ${#names[@]} > 0 )) || fail "give the models with --configs \"NAME=CONFIG ...\" (e.g. baseline=conf/tts_tacotron2.yaml)"

log_dir="$exp_dir/log"
phonemes="$exp_dir/phonemes"
synth="$exp_dir/synth"
sets="$(printf '%s\n' "$train_set" "$valid_set" "$test_set" "$style_set" | awk 'NF && !seen[$0]++' | paste -sd' ' -)"
dev=()
[[ "$device" == auto ]] || dev=(--device "$device")

if (( stage <= 1 && 1 <= stop_stage )); then
  for set in $sets; do
    [[ -f "$data_root/$set/provenance.json" ]] \
      || fail "data dir $data_root/$set is missing or incomplete; run stage 0 of the egs/<corpus>/run.sh first"
  done
fi

prosody_of() {  # SYNTH_DIR -> the prosody kind its meta.json records (none, V, VT, VTS, hierarchical)
  need "$1/meta.json" 3
  python3 -c 'import json, sys
kind = json.load(open(sys.argv[1])).get("prosody")
if not kind:
    sys.exit(f"{sys.argv[1]}: no prosody kind recorded (expected none, V, VT, VTS or hierarchical)")
print(kind)' "$1/meta.json"
}

rows_of() {  # NAME -> its synthesis rows: text_t<T> per temperature, transfer, style (models with a prosody embedding)
  local t kind rows=()
  for t in $temperatures; do rows+=("text_t$t"); done
  rows+=(transfer)
  kind="$(prosody_of "$synth/$1/transfer")" || exit 1
  [[ "$kind" == none ]] || rows+=(style)
  echo "${rows[*]}"
}

if stage_begin 1 "$frontend of $sets"; then
  for set in $sets; do
    run_logged "$log_dir/phonemize.$set.log" speechunits phonemize --data "$data_root/$set" \
      --out "$phonemes/$set.jsonl" --frontend "$frontend" --language "$language"
  done
fi

if stage_begin 2 "training: ${names[*]}"; then
  need "$phonemes/$train_set.jsonl" 1
  need "$phonemes/$valid_set.jsonl" 1
  # each training one `speechunits launch` (a plain process with --train-cmd local and --ngpu <= 1); local ones
  # share this machine's cores (OMP_NUM_THREADS), a cluster job has its own (--num-threads of --train-cmd)
  threads=$(( $(nproc) / (train_nj > 0 ? train_nj : 1) )); (( threads >= 1 )) || threads=1
  launch=(speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes")
  [[ "$train_cmd" == local || "$train_cmd" == "local "* ]] && launch=(env "OMP_NUM_THREADS=$threads" "${launch[@]}")
  pool_init "$train_nj"
  for name in "${names[@]}"; do
    (( train_nj > 1 )) && echo "training $name in the background on $threads thread(s) (log: $log_dir/train.$name.log)"
    # shellcheck disable=SC2086  # the overrides are words
    pool_run "$log_dir/train.$name.log" "${launch[@]}" --log "$log_dir/train.$name.slurm.log" -- \
      train-tts --config "${model_config[$name]}" --out-dir "$exp_dir/$name" "${dev[@]}" --resume auto \
      "task.train=$data_root/$train_set" "task.valid=$data_root/$valid_set" "task.train_symbols=$phonemes/$train_set.jsonl" \
      "task.valid_symbols=$phonemes/$valid_set.jsonl" "task.frontend.kind=$frontend" \
      "task.frontend.language=$language" ${model_opts[$name]} $train_opts
  done
  pool_wait || fail "a training failed; see $log_dir/train.<name>.log"
fi

test_utts="$num_test"
(( num_test > 0 )) || test_utts=all
if stage_begin 3 "synthesis of $test_set ($test_utts utterances, vocoder ${vocoder:-Griffin-Lim}): ${names[*]}"; then
  [[ -z "$vocoder" ]] || need "$vocoder" "4 of recipes/unit2speech.sh (the mel vocoder)"
  common=(--data "$data_root/$test_set" --nj "$nj" --cmd "$cmd" "${dev[@]}")
  [[ -z "$vocoder" ]] || common+=(--vocoder "$vocoder")
  prior=("${common[@]}")
  (( num_test > 0 )) && common+=(--max-utts "$num_test")
  (( ${num_prior:-$num_test} > 0 )) && prior+=(--max-utts "${num_prior:-$num_test}")
  for name in "${names[@]}"; do
    model="$exp_dir/$name/model.pt"
    need "$model" 2
    out="$synth/$name"
    for t in $temperatures; do
      # shellcheck disable=SC2086
      run_logged "$log_dir/synth.$name.text_t$t.log" speechunits tts-synthesize --model "$model" "${prior[@]}" \
        --mode text --temperature "$t" --seeds "$seed_list" --out "$out/text_t$t" $synth_opts
    done
    # a model without a prosody embedding ignores the reference: its transfer row is the floor of the others
    # shellcheck disable=SC2086
    run_logged "$log_dir/synth.$name.transfer.log" speechunits tts-synthesize --model "$model" "${common[@]}" \
      --mode transfer --seeds "$first_seed" --out "$out/transfer" $synth_opts
    kind="$(prosody_of "$out/transfer")" || exit 1
    if [[ "$kind" == none ]]; then
      echo "stage 3: $name has no prosody embedding (prosody none): no style transfer row"
    else
      # shellcheck disable=SC2086
      run_logged "$log_dir/synth.$name.style.log" speechunits tts-synthesize --model "$model" "${common[@]}" \
        --mode style --style-data "$data_root/$style_set" --seeds "$first_seed" --out "$out/style" $synth_opts
    fi
  done
fi

if stage_begin 4 "evaluation (judge: ${judge:-none}): ${names[*]}"; then
  scoring=("${dev[@]}")
  if [[ -n "$judge" ]]; then need "$judge" "2 of recipes/unit2speech.sh (the judge)"; scoring+=(--judge "$judge"); fi
  if [[ -n "$prosody_labels" ]]; then need "$prosody_labels" "0 (the corpus generator)"; scoring+=(--prosody-labels "$prosody_labels"); fi
  for name in "${names[@]}"; do
    rows="$(rows_of "$name")" || exit 1
    for row in $rows; do
      need "$synth/$name/$row/manifest.jsonl" 3
      refs=("$data_root/$test_set")   # style rows: the test recording of the text, the style set's reference
      [[ "$row" == style ]] && refs+=("$data_root/$style_set")
      run_logged "$log_dir/eval.$name.$row.log" speechunits tts-evaluate --synth "$synth/$name/$row" \
        --references "${refs[@]}" "${scoring[@]}" --out "$exp_dir/eval/$name/$row.json"
    done
  done
fi

if stage_begin 5 "RESULTS.md"; then
  # one table row per model and synthesis row (<name>/<row>): KL, transfer correlation, FFE, MCD, failures,
  # CER; the diversity-vs-temperature table from the text_t<T> reports
  reports=()
  for name in "${names[@]}"; do
    rows="$(rows_of "$name")" || exit 1
    for row in $rows; do
      need "$exp_dir/eval/$name/$row.json" 4
      reports+=("$name/$row=$exp_dir/eval/$name/$row.json")
    done
  done
  fig="${figure_model:-${names[-1]}}"
  [[ " ${names[*]} " == *" $fig "* ]] || fail "--figure-model $fig is not one of the models of --configs: ${names[*]}"
  contours=()
  for t in $temperatures; do contours+=("$synth/$fig/text_t$t"); done
  run_logged "$log_dir/results.log" speechunits tts-results --reports "${reports[@]}" --out "$exp_dir/RESULTS.md" \
    --figures "$exp_dir/figures" --attention "$synth/$fig/transfer" --contours "${contours[@]}"
fi
