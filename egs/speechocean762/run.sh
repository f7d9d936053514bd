#!/usr/bin/env bash
# Sylber syllable units trained on real speech: speechocean762 (OpenSLR SLR101, CC BY 4.0;
# 5,000 read English sentences of 250 Mandarin L1 speakers, 16 kHz; download it from
# https://www.openslr.org/101/ and unpack it yourself: nothing is downloaded here), optionally
# together with other data dirs (e.g. the synthetic egs/synth ones).
#   bash egs/speechocean762/run.sh --corpus-dir /data/speechocean762 --teacher-init /models/hubert.pt
#   bash egs/speechocean762/run.sh --corpus-dir ... --extra-train-sets "egs/synth/data/train-clean-100"
# speechocean762 has no time alignments: boundary scoring (stage 6) needs another real labelled
# set, given as --extra-test-sets data dirs and --alignments of their TextGrids.
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/speechocean762/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"

. ../db.sh

stage=0                      # first stage to run
stop_stage=100               # last stage to run
nj=4                         # parallel jobs (bootstrap segmentation, tokenization)
corpus_dir="$SPEECHOCEAN762" # speechocean762 dir: train/ test/ WAVE/ (default: $SPEECHUNITS_SPEECHOCEAN762 via egs/db.sh)
train_sets="train"           # speechocean762 splits trained on (data dirs <data-root>/so762_<split>)
test_sets="test"             # speechocean762 splits segmented and tokenized (stages 1, 4; never scored: no alignments)
extra_train_sets=""          # more training data dirs (paths, space-separated), e.g. egs/synth/data/train-clean-100 (from the repo root)
extra_dev_sets=""            # labelled data dirs (paths) to tune on (--tune-shift / --tune-thresholds; need --alignments)
extra_test_sets=""           # labelled data dirs (paths) scored in stage 6 against --alignments
alignments=""                # dir searched for <utt-id>.TextGrid of the extra dev/test sets (stage 6, tuning)
teacher_init=""              # HuBERT checkpoint (fairseq .pt / HF dir / speechunits model.pt): Sylber stage 1 starts from it
stage1_config=../../recipes/conf/sylber_stage1_real.yaml  # Sylber stage 1 config (augmentation on)
stage2_config=../../recipes/conf/sylber_stage2_real.yaml  # Sylber stage 2 config (augmentation on)
stage1_opts=""               # KEY=VALUE overrides of stage 1, e.g. "task.augment.reverb.prob=0" (ablation)
stage2_opts=""               # KEY=VALUE overrides of stage 2
eval_opts=""                 # extra recipes/sylber.sh options for stage 6, e.g. "--tier syllables"
tune_shift=false             # stage 6: tune the boundary shift on the first extra dev set
tune_thresholds=false        # stages 2-3: pick each model's thresholds on the first extra dev set (needs --alignments)
num_clusters=0               # k-means codebook size (stage 5; 0 skips it)
cluster_opts=""              # extra `speechunits cluster` flags
ngpu=1                       # GPUs for training (>1: DDP with torchrun)
device=auto                  # auto | cpu | cuda for training and tokenization
data_root=data               # Kaldi data dirs: <data-root>/<set>/ (extra sets are linked in here)
exp_root=exp                 # logs and model outputs: <exp-root>/sylber/...

help_message="Usage: bash egs/speechocean762/run.sh --corpus-dir DIR [options]
Stages:
  0  data prep: speechunits prepare-data --corpus speechocean762 for every --train-sets and
     --test-sets split -> <data-root>/so762_<split>/ (Kaldi files, manifest.jsonl, provenance.json)
  (HuBERT pretraining stages will come here; until then give --teacher-init)
  1  bootstrap segments of every train set (speechocean762 and --extra-train-sets), the test
     splits and the extra dev/test sets                              (recipes/sylber.sh, as are 2-6)
  2  Sylber stage 1 training on all train sets together (recipes/conf/sylber_stage1_real.yaml:
     noise, reverb, speed and pitch augmentation; --teacher-init is the initial model)
  3  Sylber stage 2 training (recipes/conf/sylber_stage2_real.yaml)
  4  tokenization of the test splits and extra dev/test sets with the stage-1 and stage-2 models
  5  k-means (--num-clusters > 0) on the first train set, and quantization
  6  boundary evaluation of --extra-test-sets against --alignments -> <exp-root>/sylber/RESULTS.md
     (speechocean762 itself has no time alignments; without both options stage 6 is skipped)
Extra sets are data dirs made elsewhere (e.g. by egs/synth/run.sh stage 0); each is linked as
<data-root>/<its folder name>, so their names must differ from each other and from so762_<split>.
Ablations: --stage1-opts \"task.augment.reverb.prob=0\" (see egs/speechocean762/README.md)."

. ../../utils/parse_options.sh
. ../../utils/stages.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir alignments teacher_init stage1_config stage2_config data_root exp_root

LAYOUT="speechocean762/                      (from https://www.openslr.org/101/)
  train/ test/                       Kaldi data dirs: wav.scp text utt2spk spk2utt (spk2age spk2gender)
                                     wav.scp paths are relative to the corpus dir: WAVE/SPEAKER<spk>/<utt>.WAV
  WAVE/SPEAKER<spk>/<utt>.WAV        16 kHz mono
  resource/                          pronunciation scores (not used)"

abs_paths() {  # PATH...: each made absolute against the caller's cwd (relative command-line paths)
  local p
  for p in "$@"; do
    [[ "$p" == /* ]] || p="$CALLER_DIR/$p"
    realpath -m -s -- "$p"
  done
}

link_sets() {  # PATH...: link each data dir as <data-root>/<name>; prints the names
  local p name target
  for p in $(abs_paths "$@"); do
    name="$(basename "$p")"
    if [[ ! -f "$p/provenance.json" ]]; then
      echo "$0: extra data dir $p is missing or incomplete (no provenance.json); run the stage 0 that makes it" >&2
      return 1
    fi
    if [[ "$name" == so762_* ]]; then
      echo "$0: extra data dir $p: the name '$name' is reserved for speechocean762 splits; rename or link it" >&2
      return 1
    fi
    target="$data_root/$name"
    if [[ -L "$target" ]]; then
      if [[ "$(realpath -- "$target")" != "$(realpath -- "$p")" ]]; then
        echo "$0: $target already links to $(readlink -- "$target"), not $p: two extra sets named '$name'?" >&2
        return 1
      fi
    elif [[ -e "$target" ]]; then
      echo "$0: cannot link extra data dir $p as $target: it exists and is not a link" >&2
      return 1
    else
      mkdir -p "$data_root"
      ln -s -- "$p" "$target"
    fi
    echo "$name"
  done
}

so762_names() {  # SPLIT...: the data dir names of speechocean762 splits
  local s
  for s in "$@"; do echo "so762_$s"; done
}

if stage_begin 0 "data prep of speechocean762 splits: $train_sets $test_sets"; then
  . ../../utils/path.sh
  require_corpus speechocean762 "$corpus_dir" "$LAYOUT" || exit 1
  for split in $train_sets $test_sets; do
    if [[ "$split" != train && "$split" != test ]]; then
      echo "error: speechocean762 has the splits train and test; got '$split'" >&2
      exit 1
    fi
    if [[ ! -f "$corpus_dir/$split/wav.scp" ]]; then
      echo "error: $corpus_dir/$split/wav.scp not found; expected layout of speechocean762:" >&2
      echo "$LAYOUT" | sed 's/^/  /' >&2
      exit 1
    fi
  done
  for split in $train_sets $test_sets; do
    run_logged "$exp_root/data/log/prepare.so762_$split.log" speechunits prepare-data --corpus speechocean762 \
      --corpus-dir "$corpus_dir" --split "$split" --out "$data_root/so762_$split"
  done
  echo "stage 0: data dirs in $(cd "$data_root" && pwd):"
  for set in $(so762_names $train_sets $test_sets); do
    echo "  $data_root/$set  ($(wc -l < "$data_root/$set/manifest.jsonl") utterances)"
  done
fi

# ---------------------------------------------------------------------------------------------
# HuBERT pretraining on the same data dirs goes here (recipes/hubert.sh, to be added): its final
# checkpoint then replaces --teacher-init as the initial model of Sylber stage 1 below.
# ---------------------------------------------------------------------------------------------

(( stop_stage >= 1 )) || exit 0
extra_train=$(link_sets $extra_train_sets) || exit 1
extra_dev=$(link_sets $extra_dev_sets) || exit 1
extra_test=$(link_sets $extra_test_sets) || exit 1
all_train="$(echo $(so762_names $train_sets) $extra_train)"
if [[ -z "$all_train" ]]; then
  echo "$0: no training data: give --train-sets and/or --extra-train-sets" >&2
  exit 1
fi
if [[ -n "$extra_train$extra_dev$extra_test" ]]; then
  echo "extra data dirs linked in $data_root: $(echo $extra_train $extra_dev $extra_test)"
fi
if (( stage <= 2 && 2 <= stop_stage )); then
  if [[ -n "$teacher_init" && ! -e "$teacher_init" ]]; then
    echo "$0: --teacher-init $teacher_init does not exist" >&2
    exit 1
  fi
  if [[ -z "$teacher_init" && "$stage1_opts" != *task.init=* && "$stage1_opts" != *task.teacher=logmel* ]]; then
    echo "$0: Sylber stage 1 (stage 2 here) distils from its initial model: give --teacher-init CHECKPOINT" \
         "(a HuBERT), or --stage1-opts \"task.teacher=logmel ...\" to train from scratch on a log-mel teacher" >&2
    exit 1
  fi
fi

common=(--nj "$nj" --ngpu "$ngpu" --device "$device" --data-root "$data_root" --exp-dir "$exp_root/sylber"
        --train-set "$all_train" --dev-sets "$(echo $extra_dev)" --init "$teacher_init"
        --stage1-config "$stage1_config" --stage2-config "$stage2_config"
        --stage1-opts "$stage1_opts" --stage2-opts "$stage2_opts"
        --num-clusters "$num_clusters" --cluster-opts "$cluster_opts"
        --alignments "$alignments" --tune-thresholds "$tune_thresholds")

if (( stage <= 5 )); then
  # stages 1-5 on everything; the speechocean762 test splits cannot be scored, so stage 6 runs apart
  ../../recipes/sylber.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$(( stop_stage < 5 ? stop_stage : 5 ))" \
    "${common[@]}" --test-sets "$(echo $(so762_names $test_sets) $extra_test)"
fi

if stage_begin 6 "boundary evaluation of the extra test sets: ${extra_test:-none}"; then
  if [[ -z "$alignments" || -z "$extra_test" ]]; then
    echo "stage 6: skipped: speechocean762 has no time alignments; score on a labelled real set with" \
         "--extra-test-sets DATA_DIR --alignments TEXTGRID_DIR"
  else
    # shellcheck disable=SC2086
    ../../recipes/sylber.sh --stage 6 --stop-stage 6 "${common[@]}" --test-sets "$(echo $extra_test)" \
      --tune-shift "$tune_shift" $eval_opts
  fi
fi
