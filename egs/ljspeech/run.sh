#!/usr/bin/env bash
# Unit-to-speech and Capacitron TTS on LJSpeech (real corpus, given on disk; nothing is downloaded):
# the paper-scale HiFi-GAN V1 mel vocoder, an intelligibility judge, optional unit vocoders, then
# (--tts true) Tacotron2 and Capacitron models voiced by that vocoder.
#   bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1
#   bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1 --tokenizer exp/sylber/stage2/model.pt   # + frame units
#   bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1 --tts true                # + TTS (stages 8-12)
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/ljspeech/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh
. ./cmd.sh || exit 1       # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                    # first stage to run
stop_stage=100             # last stage to run
nj=8                       # parallel jobs (F0, synthesis, tokenization)
corpus_dir="$LJSPEECH"     # the LJSpeech-1.1 dir (default: $SPEECHUNITS_LJSPEECH via egs/db.sh)
data_root=data             # Kaldi data dirs: <data-root>/{train,valid,test}/
exp_root=exp               # logs and models: <exp-root>/unit2speech/
ngpu=1                     # GPUs per node for training (>1: DDP with torchrun)
nnodes=1                   # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
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
tts=false                  # true: also stages 8-12, Capacitron TTS (recipes/tts.sh)
tts_baseline_config=../../recipes/conf/tts_tacotron2.yaml      # Tacotron2 without prosody embedding (empty: no baseline row)
tts_vt_config=../../recipes/conf/tts_capacitron_vt.yaml        # Capacitron V+T, trained once per --tts-capacities value
tts_capacities="10 50 150"                                     # capacities C (nats) of the V+T models vt<C> (empty: none)
tts_hier_config=../../recipes/conf/tts_capacitron_hier.yaml    # hierarchical Capacitron (empty: no hier row)
tts_opts=""                # KEY=VALUE overrides of every TTS training, e.g. "task.model.attention=dynamic_conv"
tts_num_test=100           # test clips synthesized per TTS row (0: all 186 of LJ001)

help_message="Usage: bash egs/ljspeech/run.sh --corpus-dir /data/LJSpeech-1.1 [options]
Stages:
  0  data prep: speechunits prepare-data --corpus ljspeech for the chapter split
       (test = LJ001, valid = LJ002, train = LJ003-LJ050) -> <data-root>/{train,valid,test}/
  1-7  recipes/unit2speech.sh: F0 (--f0 true), judge, frame units (--tokenizer), vocoders,
       synthesis of test (Griffin-Lim, mel vocoder, units), re-recognition, evaluation
       -> <exp-root>/unit2speech/RESULTS.md + spectrograms.png
  With --tts true, stages 8-12 are stages 1-5 of recipes/tts.sh (the paper-style configs
  recipes/conf/tts_{tacotron2,capacitron_vt,capacitron_hier}.yaml, 22.05 kHz, hop 256):
  8  phonemes (espeak-ng) of train, valid, test
  9  training: baseline (Tacotron2, no VAE), V+T at each C of --tts-capacities (vt10, vt50, vt150),
     hierarchical -> <exp-root>/tts/<name>/model.pt
  10 synthesis of --tts-num-test test clips per model: prior samples (temperatures 0.5 and 1.0,
     seeds 0-2), prosody transfer, style transfer (references from valid), through the stage-4
     mel vocoder (exp/unit2speech/vocoder_mel/vocoder.pt) when it exists, else Griffin-Lim
  11 evaluation (MCD, FFE, transfer correlation against the references' measured prosody,
     diversity, attention failures, KL; judge CER when stage 2 made the judge)
  12 <exp-root>/tts/RESULTS.md + figures/
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (extract-f0, frame-units, synthesize,
  tokenize, tts-synthesize), --train-cmd each training (speechunits launch: --ngpu GPUs per node on
  --nnodes nodes); both default to those of cmd.sh, chosen by SPEECHUNITS_CMD_BACKEND=local|slurm
  (site settings of Slurm in conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\"
  --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir data_root exp_root mel_config judge_config tokenizer units_config \
  tts_baseline_config tts_vt_config tts_hier_config

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
if (( stop_stage >= 1 && stage <= 7 )); then
  ../../recipes/unit2speech.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" \
    --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/unit2speech" \
    --train-set train --valid-set valid --test-set test --judge-config "$judge_config" --judge-opts "$judge_opts" \
    --mel-config "$mel_config" --mel-opts "$mel_opts" --f0 "$f0" "${units_args[@]}"
fi

if [[ "$tts" == true ]] && (( stop_stage >= 8 )); then
  tts_models=""
  [[ -z "$tts_baseline_config" ]] || tts_models="baseline=$tts_baseline_config"
  for c in $tts_capacities; do tts_models+=" vt$c=$tts_vt_config:task.prosody.capacity=$c"; done
  [[ -z "$tts_hier_config" ]] || tts_models+=" hier=$tts_hier_config"
  # the mel vocoder and the judge of stages 4 and 2, when they were trained
  tts_vocoder="$exp_root/unit2speech/vocoder_mel/vocoder.pt"; [[ -f "$tts_vocoder" ]] || tts_vocoder=""
  tts_judge="$exp_root/unit2speech/judge/judge.pt"; [[ -f "$tts_judge" ]] || tts_judge=""
  ../../recipes/tts.sh --stage "$(( stage > 8 ? stage - 7 : 1 ))" --stop-stage "$(( stop_stage - 7 ))" \
    --nj "$nj" --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/tts" \
    --train-set train --valid-set valid --test-set test --configs "$tts_models" --train-opts "$tts_opts" \
    --vocoder "$tts_vocoder" --judge "$tts_judge" --num-test "$tts_num_test"
fi
