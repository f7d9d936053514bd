#!/usr/bin/env bash
# Unit-to-speech on LJSpeech (real corpus, given on disk; nothing is downloaded): the
# paper-scale HiFi-GAN V1 mel vocoder, an intelligibility judge, optional unit vocoders.
#   bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1
#   bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1 --tokenizer exp/sylber/stage2/model.pt   # + frame units
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/ljspeech/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh

stage=0                    # first stage to run
stop_stage=100             # last stage to run
nj=8                       # parallel jobs (F0, synthesis, tokenization)
corpus_dir="$LJSPEECH"     # the LJSpeech-1.1 dir (default: $SPEECHUNITS_LJSPEECH via egs/db.sh)
data_root=data             # Kaldi data dirs: <data-root>/{train,valid,test}/
exp_root=exp               # logs and models: <exp-root>/unit2speech/
ngpu=1                     # GPUs for training (>1: DDP with torchrun)
device=auto                # auto | cpu | cuda
mel_config=../../recipes/conf/vocoder_hifigan_v1.yaml   # HiFi-GAN V1, 22.05 kHz, hop 256 (the paper's LJSpeech setup)
judge_config=../../recipes/conf/judge_blstm.yaml
mel_opts=""                # KEY=VALUE overrides, e.g. "max_steps=500000"
judge_opts=""
tokenizer=""               # encoder checkpoint for frame-unit rows (empty: mel rows only)
layer=6                    # its layer quantized into frame units
num_units=100              # frame-unit codebook size
units_config=../../recipes/conf/vocoder_hifigan_v1.yaml   # used when --tokenizer is given (task.input is set below)
units_opts=""
f0=false                   # true: F0 conditioning of the unit vocoder (stage 1 of recipes/unit2speech.sh)

help_message="Usage: bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1 [options]
Stages:
  0  data prep: speechunits prepare-data --corpus ljspeech for the chapter split
       (test = LJ001, valid = LJ002, train = LJ003-LJ050) -> <data-root>/{train,valid,test}/
  1-7  recipes/unit2speech.sh: F0 (--f0 true), judge, frame units (--tokenizer), vocoders,
       synthesis of test (Griffin-Lim, mel vocoder, units), re-recognition, evaluation
       -> <exp-root>/unit2speech/RESULTS.md + spectrograms.png"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir data_root exp_root mel_config judge_config tokenizer units_config

if stage_begin 0 "data prep of LJSpeech (chapter split)"; then
  require_corpus LJSpeech "$corpus_dir" "LJSpeech-1.1/metadata.csv and LJSpeech-1.1/wavs/<id>.wav" || exit 1
  for split in train valid test; do
    run_logged "$exp_root/data/log/prepare.$split.log" speechunits prepare-data --corpus ljspeech \
      --corpus-dir "$corpus_dir" --split "$split" --out "$data_root/$split"
  done
fi

units_args=()
if [[ -n "$tokenizer" ]]; then
  units_args=(--units-config "$units_config" --tokenizer "$tokenizer" --layer "$layer" --num-units "$num_units"
              --units-opts "task.input=frame_units $units_opts")
fi
if (( stop_stage >= 1 )); then
  ../../recipes/unit2speech.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" \
    --ngpu "$ngpu" --device "$device" --data-root "$data_root" --exp-dir "$exp_root/unit2speech" \
    --train-set train --valid-set valid --test-set test --judge-config "$judge_config" --judge-opts "$judge_opts" \
    --mel-config "$mel_config" --mel-opts "$mel_opts" --f0 "$f0" "${units_args[@]}"
fi
