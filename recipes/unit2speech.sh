#!/usr/bin/env bash
# Unit-to-speech: vocoders over mels, frame units and syllable tokens, judged by a CTC recognizer.
#
# Called by egs/<corpus>/run.sh from that directory, after data prep wrote Kaldi data dirs
# <data-root>/<set>/ (and, for the syllable rows, after recipes/sylber.sh wrote quantized
# syllable unit sets). Relative paths are relative to the caller's cwd. Every stage calls a
# `speechunits` command; finished outputs are skipped (provenance.json) and training resumes
# from its last checkpoint, so a rerun is cheap and a killed stage continues where it stopped.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"
RECIPES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

stage=1              # first stage to run
stop_stage=100       # last stage to run
nj=2                 # parallel jobs (F0, synthesis, tokenization)
cmd=local            # how those jobs run: local | "slurm --mem 4G --time 2:00:00 ..." (--cmd of the sharded commands)
train_cmd=local      # how each training runs: local | "slurm --time 48:00:00 ..." (speechunits launch --cmd)
ngpu=0               # GPUs per node for training (>1: DDP, torchrun)
nnodes=1             # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=auto          # auto | cpu | cuda
data_root=data       # <data-root>/<set>/ Kaldi data dirs
exp_dir=exp/unit2speech
train_set=""         # data dir name of the training audio (judge, vocoders, k-means)
valid_set=""         # data dir name used for validation during training
test_set=""          # data dir name of the held-out test set (synthesized and scored)
judge_config="$RECIPES/conf/judge_blstm.yaml"
mel_config="$RECIPES/conf/vocoder_hifigan_v1.yaml"   # mel vocoder (the TTS vocoder)
units_config=""      # frame-unit vocoder config (empty: no frame-unit rows)
syllables_config=""  # syllable vocoder config (empty: no syllable rows)
judge_opts=""        # KEY=VALUE overrides of the judge training
mel_opts=""          # KEY=VALUE overrides of each vocoder training
units_opts=""
syllables_opts=""
tokenizer=""         # encoder checkpoint for frame units (and the Sylber model re-tokenizing syllables)
layer=6              # encoder layer of the frame units
num_units=100        # k of the frame-unit codebook
syllable_units=""    # dir holding quantized syllable unit sets <dir>/<set>/ (train and test)
syllable_model=""    # the Sylber model those units came from (re-tokenizes the synthesized audio)
f0=false             # true: extract F0 once (stage 1) and condition the frame-unit vocoder on it (the syllable
                     # vocoder is never F0-conditioned: its predicted-duration row has no F0 track to follow)
figure_utt=""        # utterance of the spectrogram figure (default: the first test id)

help_message="Usage: recipes/unit2speech.sh [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  F0 of the train/valid/test sets with Praat (speechunits extract-f0)   [--f0 true only]
       -> <exp-dir>/f0/<set>/
  2  the intelligibility judge: speechunits train-judge on the train set -> <exp-dir>/judge/judge.pt
  3  frame units (k=--num-units) of layer --layer of --tokenizer: k-means on the train set,
     units of train/valid/test -> <exp-dir>/units/frames/<set>/          [--units-config only]
  4  vocoders: speechunits train-vocoder for mel, frame units, syllables
       -> <exp-dir>/vocoder_{mel,units,syllables}/vocoder.pt
  5  synthesize the test set: Griffin-Lim and the mel vocoder from its mels, the unit vocoders
     from its units (syllables: stored and predicted durations) -> <exp-dir>/synth/<row>/
  6  re-recognition: tokenize the synthesized audio again with the same tokenizer
       -> <exp-dir>/retok/<row>/
  7  evaluate every row (speechunits evaluate-synthesis) and write <exp-dir>/RESULTS.md with a
     table and <exp-dir>/spectrograms.png
Jobs: --cmd runs the --nj shards of stages 1, 3, 5 and 6 (local processes, or Slurm jobs with
  --cmd \"slurm --mem 4G ...\"); each training of stages 2 and 4 is one job of --train-cmd on --nnodes
  nodes with --ngpu GPUs each (speechunits launch; logs <exp-dir>/log/<model>.log, <model>.slurm.log)."

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
if [[ -z "$train_set" || -z "$test_set" ]]; then
  echo "$0: give --train-set and --test-set (and --valid-set)" >&2
  exit 1
fi
[[ -n "$valid_set" ]] || valid_set="$test_set"
if [[ -n "$units_config" && -z "$tokenizer" ]]; then
  echo "$0: --units-config needs --tokenizer (the encoder whose layer --layer is quantized)" >&2
  exit 1
fi
if [[ -n "$syllables_config" && ( -z "$syllable_units" || -z "$syllable_model" ) ]]; then
  echo "$0: --syllables-config needs --syllable-units (quantized syllable unit sets) and --syllable-model" >&2
  exit 1
fi
[[ -n "$cmd" ]] || { echo "$0: --cmd is empty (local, or e.g. \"slurm --mem 4G\")" >&2; exit 1; }
[[ -n "$train_cmd" ]] || { echo "$0: --train-cmd is empty (local, or e.g. \"slurm --time 48:00:00\")" >&2; exit 1; }
[[ "$ngpu" =~ ^[0-9]+$ ]] || { echo "$0: --ngpu must be a non-negative integer, got '$ngpu'" >&2; exit 1; }
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nnodes must be a positive integer, got '$nnodes'" >&2; exit 1; }
log_dir="$exp_dir/log"
sets="$train_set $valid_set $test_set"
sets="$(tr ' ' '\n' <<< "$sets" | awk 'NF && !seen[$0]++' | tr '\n' ' ')"

train() {  # LOG-NAME VERB CONFIG OPTS...: one training through speechunits launch (--train-cmd, --ngpu GPUs per
  # node on --nnodes nodes: a plain process, torchrun or one Slurm job), logged in <exp-dir>/log/LOG-NAME.log
  local name="$1" verb="$2" config="$3"; shift 3
  local dev=()
  [[ "$device" == auto ]] || dev=(--device "$device")
  run_logged "$log_dir/$name.log" speechunits launch --cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" \
    --log "$log_dir/$name.slurm.log" -- "$verb" --config "$config" "${dev[@]}" --resume auto "$@"
}

f0_opt() {  # training set, validation set -> the F0 options of train-vocoder when F0 conditioning is on
  if [[ "$f0" == true ]]; then echo "task.model.use_f0=true task.f0=$exp_dir/f0/$1 task.valid_f0=$exp_dir/f0/$2"; fi
}

f0_synth_opt() {  # set -> --f0 ... when F0 conditioning is on
  if [[ "$f0" == true ]]; then echo "--f0 $exp_dir/f0/$1"; fi
}

if stage_begin 1 "F0 extraction"; then
  if [[ "$f0" == true ]]; then
    for set in $sets; do
      run_logged "$log_dir/f0.$set.log" speechunits extract-f0 --data "$data_root/$set" --out "$exp_dir/f0/$set" \
        --nj "$nj" --cmd "$cmd"
    done
  else
    echo "stage 1: --f0 false, nothing to do"
  fi
fi

if stage_begin 2 "intelligibility judge"; then
  # shellcheck disable=SC2086
  train judge train-judge "$judge_config" --out-dir "$exp_dir/judge" \
    "task.train=$data_root/$train_set" "task.valid=$data_root/$valid_set" $judge_opts
fi

if [[ -n "$units_config" ]] && stage_begin 3 "frame units (k=$num_units, layer $layer)"; then
  run_logged "$log_dir/frame_units.$train_set.log" speechunits frame-units --model "$tokenizer" --layer "$layer" \
    --data "$data_root/$train_set" --k "$num_units" --out "$exp_dir/units/frames/$train_set" --device "$device" \
    --nj "$nj" --cmd "$cmd"
  for set in $valid_set $test_set; do
    [[ "$set" == "$train_set" ]] && continue
    run_logged "$log_dir/frame_units.$set.log" speechunits frame-units --model "$tokenizer" --layer "$layer" \
      --data "$data_root/$set" --codebook "$exp_dir/units/frames/$train_set/codebook.pt" \
      --out "$exp_dir/units/frames/$set" --device "$device" --nj "$nj" --cmd "$cmd"
  done
fi

if stage_begin 4 "vocoder training"; then
  # shellcheck disable=SC2086
  train vocoder_mel train-vocoder "$mel_config" --out-dir "$exp_dir/vocoder_mel" \
    "task.train=$data_root/$train_set" "task.valid=$data_root/$valid_set" $mel_opts
  if [[ -n "$units_config" ]]; then
    # shellcheck disable=SC2086
    train vocoder_units train-vocoder "$units_config" --out-dir "$exp_dir/vocoder_units" \
      "task.train=$exp_dir/units/frames/$train_set" "task.valid=$exp_dir/units/frames/$valid_set" \
      $(f0_opt "$train_set" "$valid_set") $units_opts
  fi
  if [[ -n "$syllables_config" ]]; then
    # shellcheck disable=SC2086
    train vocoder_syllables train-vocoder "$syllables_config" --out-dir "$exp_dir/vocoder_syllables" \
      "task.train=$syllable_units/$train_set" "task.valid=$syllable_units/$valid_set" $syllables_opts
  fi
fi

synth="$exp_dir/synth"
if stage_begin 5 "synthesis of $test_set"; then
  # the baseline: Griffin-Lim from the very mels the mel vocoder reads
  run_logged "$log_dir/synth.griffin_lim.log" speechunits synthesize --model "$exp_dir/vocoder_mel/vocoder.pt" \
    --griffin-lim --data "$data_root/$test_set" --out "$synth/griffin_lim" --nj "$nj" --cmd "$cmd"
  run_logged "$log_dir/synth.mel.log" speechunits synthesize --model "$exp_dir/vocoder_mel/vocoder.pt" \
    --data "$data_root/$test_set" --out "$synth/mel" --device "$device" --nj "$nj" --cmd "$cmd"
  if [[ -n "$units_config" ]]; then
    run_logged "$log_dir/synth.units.log" speechunits synthesize --model "$exp_dir/vocoder_units/vocoder.pt" \
      --units "$exp_dir/units/frames/$test_set" $(f0_synth_opt "$test_set") --out "$synth/units" --device "$device" \
      --nj "$nj" --cmd "$cmd"
  fi
  if [[ -n "$syllables_config" ]]; then
    for durations in stored predicted; do
      run_logged "$log_dir/synth.syllables_$durations.log" speechunits synthesize \
        --model "$exp_dir/vocoder_syllables/vocoder.pt" --units "$syllable_units/$test_set" \
        --durations "$durations" --out "$synth/syllables_$durations" --device "$device" --nj "$nj" --cmd "$cmd"
    done
  fi
fi

retok="$exp_dir/retok"
if stage_begin 6 "re-recognition of the synthesized audio"; then
  if [[ -n "$units_config" ]]; then
    run_logged "$log_dir/retok.units.log" speechunits frame-units --model "$tokenizer" --layer "$layer" \
      --data "$synth/units" --codebook "$exp_dir/units/frames/$train_set/codebook.pt" --out "$retok/units" \
      --device "$device" --nj "$nj" --cmd "$cmd"
  fi
  if [[ -n "$syllables_config" ]]; then
    for durations in stored predicted; do
      run_logged "$log_dir/retok.syllables_$durations.log" speechunits tokenize --model "$syllable_model" \
        --data "$synth/syllables_$durations" --out "$retok/syllables_$durations" --device "$device" \
        --nj "$nj" --cmd "$cmd" --no-embeddings
    done
  fi
fi

if stage_begin 7 "evaluation"; then
  judge="$exp_dir/judge/judge.pt"
  ref="$data_root/$test_set"
  evaluate() {  # row-name key [re-recognition args...]
    local name="$1" key="$2"; shift 2
    local synth_dir="$synth/$key"
    [[ "$key" == truth ]] && synth_dir="$ref"
    run_logged "$log_dir/eval.$key.log" speechunits evaluate-synthesis --name "$name" --synth "$synth_dir" \
      --reference "$ref" --judge "$judge" --out "$exp_dir/eval/$key.json" --quiet "$@"
  }
  rows=(truth griffin_lim mel)
  evaluate "ground truth" truth
  evaluate "Griffin-Lim (32 it.)" griffin_lim
  evaluate "mel vocoder" mel
  panels=(--panel "ground truth=$ref" --panel "Griffin-Lim=$synth/griffin_lim" --panel "mel vocoder=$synth/mel")
  if [[ -n "$units_config" ]]; then
    evaluate "frame units (k=$num_units)" units --input-units "$exp_dir/units/frames/$test_set" --rerecognized "$retok/units"
    rows+=(units); panels+=(--panel "frame units=$synth/units")
  fi
  if [[ -n "$syllables_config" ]]; then
    evaluate "syllables, stored durations" syllables_stored --input-units "$syllable_units/$test_set" \
      --rerecognized "$retok/syllables_stored"
    evaluate "syllables, predicted durations" syllables_predicted --input-units "$syllable_units/$test_set" \
      --rerecognized "$retok/syllables_predicted"
    rows+=(syllables_stored syllables_predicted)
    panels+=(--panel "syllables (stored)=$synth/syllables_stored" --panel "syllables (predicted)=$synth/syllables_predicted")
  fi
  reports=()
  for r in "${rows[@]}"; do reports+=("$exp_dir/eval/$r.json"); done
  [[ -n "$figure_utt" ]] || figure_utt="$(head -n 1 "$ref/manifest.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["id"])')"
  run_logged "$log_dir/results.log" speechunits synthesis-results --reports "${reports[@]}" --out "$exp_dir/RESULTS.md" \
    --title "Unit-to-speech on $test_set" --figure "$exp_dir/spectrograms.png" --utt "$figure_utt" "${panels[@]}"
fi
