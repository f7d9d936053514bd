#!/usr/bin/env bash
# The embedded default recipe: synthetic corpora made here with Festival and espeak-ng
# (no download, no real corpus needed), then the Sylber stages that exist.
#   bash egs/synth/run.sh                      # everything (what `make demo` runs)
#   bash egs/synth/run.sh --tiny true --stop-stage 0 --data-root /tmp/d --exp-root /tmp/e
#   bash egs/synth/run.sh --unit2speech true --tts true       # + vocoders, judge, Capacitron TTS (`make demo-tts`)
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/synth/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./cmd.sh || exit 1   # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                   # first stage to run
stop_stage=100            # last stage to run
nj=2                      # parallel jobs (synthesis and segmentation)
seed=0                    # seed of the corpus generator (same seed + sizes = same corpus)
tiny=false                # true: tiny corpora (conf/sizes_tiny.sh) for tests
layouts="librispeech fsc ljspeech"  # corpus shapes to generate in stage 0
data_root=data            # corpora in <data-root>/corpora, Kaldi data dirs in <data-root>/<set>
exp_root=exp              # logs, units, RESULTS.md
train_utts=""             # default from conf/sizes.sh (conf/sizes_tiny.sh with --tiny true)
dev_utts=""               # default from conf/sizes.sh
test_utts=""              # default from conf/sizes.sh
fsc_speakers=""           # default from conf/sizes.sh
fsc_utts_per_speaker=""   # default from conf/sizes.sh
lj_utts=""                # default from conf/sizes.sh
tune_shift=true           # stage 6: tune the boundary shift on dev-clean (never on the test set)
tune_thresholds=true      # stages 2-3: pick each model's norm/merge thresholds on dev-clean (never on the test set)
stage1_config=conf/sylber_stage1_small.yaml  # Sylber stage 1 training config (stage 2 of this recipe)
stage2_config=conf/sylber_stage2_small.yaml  # Sylber stage 2 training config (stage 3)
stage1_opts=""            # KEY=VALUE overrides, e.g. "max_steps=50"
stage2_opts=""            # KEY=VALUE overrides
num_clusters=500          # k-means codebook size (stage 5; 0 skips it)
device=auto               # auto | cpu | cuda
ngpu=0                    # GPUs per node for each training (>1: DDP, torchrun)
nnodes=1                  # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
unit2speech=false         # true: also stages 7-13, unit-to-speech (recipes/unit2speech.sh; `make demo-unit2speech`)
tts=false                 # true: also stages 14-19, Capacitron TTS (recipes/tts.sh; `make demo-tts`)
tts_utts=""               # default from conf/sizes.sh: clips of the LJSpeech-shaped TTS corpus (more than 200)
tts_num_test=""           # default from conf/sizes.sh: test utterances synthesized per TTS row
tts_num_prior=""          # default from conf/sizes.sh: test sentences of the prior-sample rows (x seeds x temperatures)
tts_baseline_config=conf/tts_baseline_tiny.yaml  # Tacotron2 without prosody embedding (empty: no baseline row)
tts_vt_config=conf/tts_vt_tiny.yaml              # Capacitron V+T, trained once per --tts-capacities value
tts_capacities="10 50 150"                       # capacities C (nats) of the V+T models vt<C> (empty: none)
tts_hier_config=conf/tts_hier_tiny.yaml          # hierarchical Capacitron (empty: no hier row)
tts_opts=""               # KEY=VALUE overrides of every TTS training, e.g. "max_steps=50"
tts_train_nj=2            # TTS models trained at once (each on nproc / tts_train_nj threads); measured on 2
                          # cores: two one-thread runs take 1.1 s per step each, five take 4.3 s (contention)
tts_figure_model=""       # model of the TTS figures (alignment, prior-sample F0 contours); empty: the last one
tts_vocoder=griffin-lim   # griffin-lim | unit2speech: the stage-10 mel vocoder (in issue 11 the tiny CPU
                          # vocoder measured worse than Griffin-Lim: MCD 8.97 vs 8.42 dB, CER 14.0 vs 9.2 %)

help_message="Usage: bash egs/synth/run.sh [options]
Stages:
  0  data prep: speechunits synth-corpus (LibriSpeech-shaped train-clean-100/dev-clean/test-clean
     with syllable TextGrids, FSC-shaped, LJSpeech-shaped) into <data-root>/corpora, then
     speechunits prepare-data for every split into <data-root>/<set>
  1  bootstrap segments of train-clean-100, dev-clean and test-clean   (recipes/sylber.sh, as are 2-6)
       -> <exp-root>/sylber/bootstrap/<set>/
  2  Sylber stage 1 training on train-clean-100 (conf/sylber_stage1_small.yaml: log-mel teacher,
     bootstrap segments) -> <exp-root>/sylber/stage1/model.pt
  3  Sylber stage 2 training (conf/sylber_stage2_small.yaml) -> <exp-root>/sylber/stage2/model.pt
  4  tokenization of dev-clean/test-clean (and train-clean-100) with both models
  5  k-means (--num-clusters) on the stage-2 train units, quantization
  6  boundary evaluation of test-clean (held-out speakers and sentences) against the synthetic
     syllable alignments for bootstrap / stage 1 / stage 2 -> <exp-root>/sylber/RESULTS.md
  With --unit2speech true, stages 7-13 are stages 1-7 of recipes/unit2speech.sh on the same data,
  with tiny CPU configs (conf/judge_tiny.yaml, conf/vocoder_{mel,units,syllables}_tiny.yaml):
  7  F0 of train-clean-100/dev-clean/test-clean (Praat)
  8  the CTC judge on train-clean-100
  9  frame units (k=100) of the stage-2 model's layer 3
  10 vocoders: mel, frame units (F0-conditioned), syllable tokens (stage-5 k-means ids,
     with a duration predictor; no F0, so that predicted durations need nothing but the ids)
  11 synthesis of test-clean: Griffin-Lim, mel vocoder, frame units, syllables with stored and
     with predicted durations
  12 re-recognition of the synthesized audio
  13 evaluation -> <exp-root>/unit2speech/RESULTS.md + spectrograms.png
  With --tts true, stages 14-19: Capacitron TTS on a Festival LJSpeech-shaped corpus of the kal voice
  whose per-clip F0 shift, F0 range and duration stretch are recorded (stages 15-19 are stages 1-5
  of recipes/tts.sh, with the tiny CPU configs conf/tts_{baseline,vt,hier}_tiny.yaml):
  14 data prep: speechunits synth-corpus --layout ljspeech --voice kal (--tts-utts clips)
     -> <data-root>/corpora_tts (recorded prosody: .synth/ljspeech/utterances.json), then the
     chapter split (test LJ001, valid LJ002, train the rest) -> <data-root>/tts_{train,valid,test}
  15 phonemes (espeak-ng) of tts_train, tts_valid, tts_test
  16 training: baseline (no VAE), V+T at each C of --tts-capacities (vt10, vt50, vt150), hierarchical,
     --tts-train-nj at once
  17 synthesis of --tts-num-test test clips per model: prior samples (temperatures 0.5 and 1.0,
     seeds 0-2), prosody transfer, style transfer (references from tts_valid); Griffin-Lim, or the
     stage-10 mel vocoder with --tts-vocoder unit2speech
  18 evaluation against the recorded prosody (judge CER when stage 8 made the judge)
  19 <exp-root>/tts/RESULTS.md + figures/
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (synth-corpus, bootstrap-segments, tokenize,
  frame-units, extract-f0, synthesize, tts-synthesize), --train-cmd each training (speechunits
  launch: --ngpu GPUs per node on --nnodes nodes); both default to those of cmd.sh, chosen by
  SPEECHUNITS_CMD_BACKEND=local|slurm (site settings of Slurm in conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\" --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" data_root exp_root stage1_config stage2_config \
  tts_baseline_config tts_vt_config tts_hier_config   # relative paths on the command line: from the caller's cwd

SIZES=conf/sizes.sh
[[ "$tiny" == true ]] && SIZES=conf/sizes_tiny.sh
for v in train_utts dev_utts test_utts fsc_speakers fsc_utts_per_speaker lj_utts tts_utts tts_num_test tts_num_prior; do
  [[ -n "${!v}" ]] || printf -v "$v" '%s' "$(. "$SIZES"; echo "${!v}")"
done

CORPORA="$data_root/corpora"
ALIGNMENTS="$CORPORA/alignments"   # written by synth-corpus --layout librispeech
LOG="$exp_root/data/log"
LS_SETS="train-clean-100 dev-clean test-clean"

if stage_begin 0 "synthetic corpora ($layouts) and data dirs"; then
  for layout in $layouts; do
    case "$layout" in
      librispeech)
        run_logged "$LOG/synth.librispeech.log" speechunits synth-corpus --layout librispeech --out "$CORPORA" \
          --splits "train-clean-100:$train_utts,dev-clean:$dev_utts,test-clean:$test_utts" --seed "$seed" --nj "$nj" \
          --cmd "$cmd"
        for set in $LS_SETS; do
          run_logged "$LOG/prepare.$set.log" speechunits prepare-data --corpus librispeech \
            --corpus-dir "$CORPORA/LibriSpeech" --split "$set" --alignments "$ALIGNMENTS" --out "$data_root/$set"
        done ;;
      fsc)
        run_logged "$LOG/synth.fsc.log" speechunits synth-corpus --layout fsc --out "$CORPORA" \
          --num-speakers "$fsc_speakers" --utts-per-speaker "$fsc_utts_per_speaker" --seed "$seed" --nj "$nj" \
          --cmd "$cmd"
        for split in train valid test; do
          run_logged "$LOG/prepare.fsc_$split.log" speechunits prepare-data --corpus fsc \
            --corpus-dir "$CORPORA/fluent_speech_commands_dataset" --split "$split" --out "$data_root/fsc_$split"
        done ;;
      ljspeech)
        run_logged "$LOG/synth.ljspeech.log" speechunits synth-corpus --layout ljspeech --out "$CORPORA" \
          --num-utts "$lj_utts" --seed "$seed" --nj "$nj" --cmd "$cmd"
        run_logged "$LOG/prepare.ljspeech.log" speechunits prepare-data --corpus ljspeech \
          --corpus-dir "$CORPORA/LJSpeech-1.1" --split all --out "$data_root/ljspeech" ;;
      *)
        echo "$0: unknown layout '$layout' in --layouts (expected librispeech, fsc, ljspeech)" >&2
        exit 1 ;;
    esac
  done
  echo "stage 0: corpora in $(cd "$CORPORA" && pwd)"
  echo "stage 0: data dirs in $(cd "$data_root" && pwd):"
  for d in "$data_root"/*/manifest.jsonl; do
    if [[ -f "$d" ]]; then echo "  $(dirname "$d")  ($(wc -l < "$d") utterances)"; fi
  done
fi

if (( stop_stage >= 1 )); then
  ../../recipes/sylber.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" \
    --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/sylber" --train-set train-clean-100 \
    --dev-sets dev-clean --test-sets test-clean --stage1-config "$stage1_config" --stage2-config "$stage2_config" \
    --stage1-opts "$stage1_opts" --stage2-opts "$stage2_opts" --num-clusters "$num_clusters" \
    --alignments "$ALIGNMENTS" --tune-shift "$tune_shift" --tune-thresholds "$tune_thresholds"
fi

if [[ "$unit2speech" == true ]] && (( stop_stage >= 7 )); then
  ../../recipes/unit2speech.sh --stage "$(( stage > 7 ? stage - 6 : 1 ))" --stop-stage "$(( stop_stage - 6 ))" \
    --nj "$nj" --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/unit2speech" \
    --train-set train-clean-100 --valid-set dev-clean --test-set test-clean \
    --judge-config conf/judge_tiny.yaml --mel-config conf/vocoder_mel_tiny.yaml \
    --units-config conf/vocoder_units_tiny.yaml --syllables-config conf/vocoder_syllables_tiny.yaml \
    --tokenizer "$exp_root/sylber/stage2/model.tuned.pt" --layer 3 --num-units 100 --f0 true \
    --syllable-units "$exp_root/sylber/units/stage2" --syllable-model "$exp_root/sylber/stage2/model.tuned.pt"
fi

TTS_CORPORA="$data_root/corpora_tts"
if [[ "$tts" == true ]] && stage_begin 14 "TTS corpus (LJSpeech-shaped, kal voice, $tts_utts clips) and data dirs"; then
  if ! [[ "$tts_utts" =~ ^[0-9]+$ ]] || (( tts_utts <= 200 )); then
    echo "$0: --tts-utts must be more than 200: the chapter split puts clips 1-100 (LJ001) in test and" \
         "101-200 (LJ002) in valid, so only the clips after them train (got $tts_utts)" >&2
    exit 1
  fi
  run_logged "$LOG/synth.ljspeech_tts.log" speechunits synth-corpus --layout ljspeech --voice kal \
    --num-utts "$tts_utts" --out "$TTS_CORPORA" --seed "$seed" --nj "$nj" --cmd "$cmd"
  for split in train valid test; do
    run_logged "$LOG/prepare.tts_$split.log" speechunits prepare-data --corpus ljspeech \
      --corpus-dir "$TTS_CORPORA/LJSpeech-1.1" --split "$split" --out "$data_root/tts_$split"
  done
fi

if [[ "$tts" == true ]] && (( stop_stage >= 15 )); then
  tts_models=""
  [[ -z "$tts_baseline_config" ]] || tts_models="baseline=$tts_baseline_config"
  for c in $tts_capacities; do tts_models+=" vt$c=$tts_vt_config:task.prosody.capacity=$c"; done
  [[ -z "$tts_hier_config" ]] || tts_models+=" hier=$tts_hier_config"
  # the mel vocoder and the judge of the unit-to-speech stages, when they were run (--unit2speech true)
  case "$tts_vocoder" in
    griffin-lim) tts_voc="" ;;
    unit2speech) tts_voc="$exp_root/unit2speech/vocoder_mel/vocoder.pt"
                 [[ -f "$tts_voc" ]] || { echo "$0: --tts-vocoder unit2speech: no $tts_voc (run --unit2speech true)" >&2; exit 1; } ;;
    *) echo "$0: --tts-vocoder must be griffin-lim or unit2speech, got '$tts_vocoder'" >&2; exit 1 ;;
  esac
  tts_judge="$exp_root/unit2speech/judge/judge.pt"; [[ -f "$tts_judge" ]] || tts_judge=""
  ../../recipes/tts.sh --stage "$(( stage > 15 ? stage - 14 : 1 ))" --stop-stage "$(( stop_stage - 14 ))" \
    --nj "$nj" --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
    --data-root "$data_root" --exp-dir "$exp_root/tts" \
    --train-set tts_train --valid-set tts_valid --test-set tts_test --configs "$tts_models" \
    --train-opts "$tts_opts" --train-nj "$tts_train_nj" --vocoder "$tts_voc" --judge "$tts_judge" \
    --prosody-labels "$TTS_CORPORA/.synth/ljspeech/utterances.json" --num-test "$tts_num_test" --num-prior "$tts_num_prior" \
    --figure-model "$tts_figure_model"
fi
