#!/usr/bin/env bash
# Sylber syllable units trained on real speech: speechocean762 (OpenSLR SLR101, CC BY 4.0;
# 5,000 read English sentences of 250 Mandarin L1 speakers, 16 kHz; download it from
# https://www.openslr.org/101/ and unpack it yourself: nothing is downloaded here), optionally
# together with other data dirs (e.g. the synthetic egs/synth ones).
#   bash egs/speechocean762/run.sh --corpus-dir /data/speechocean762       # HuBERT teacher trained here
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
. ./cmd.sh || exit 1         # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

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
teacher_init=""              # HuBERT checkpoint (fairseq .pt / HF dir / speechunits model.pt): Sylber stage 1 starts
                             # from it and stages 1-5 are skipped; empty: stages 1-5 train one (recipes/hubert.sh)
hubert_iter1_config=../../recipes/conf/hubert_iter1.yaml  # HuBERT iteration 1 (stage 2)
hubert_iter2_config=../../recipes/conf/hubert_iter2.yaml  # HuBERT iteration 2 (stage 4)
hubert_iter1_opts=""         # KEY=VALUE overrides of iteration 1, e.g. "max_steps=1000"
hubert_iter2_opts=""         # KEY=VALUE overrides of iteration 2
hubert_k1=100                # MFCC k-means clusters (iteration-1 targets)
hubert_k2=500                # layer k-means clusters (iteration-2 targets)
hubert_layer=6               # layer of iteration 1 clustered for iteration 2
hubert_valid_set=""          # data dir (path) for HuBERT's held-out masked accuracy (e.g. egs/synth/data/dev-clean)
probe_set=""                 # data dir (path) with phone TextGrids under --probe-alignments: phone-purity probe (stage 5)
probe_alignments=""          # dir searched for <utt-id>.TextGrid of --probe-set (tier 'phones')
stage1_config=../../recipes/conf/sylber_stage1_real.yaml  # Sylber stage 1 config (augmentation on)
stage2_config=../../recipes/conf/sylber_stage2_real.yaml  # Sylber stage 2 config (augmentation on)
stage1_opts=""               # KEY=VALUE overrides of stage 1, e.g. "task.augment.reverb.prob=0" (ablation)
stage2_opts=""               # KEY=VALUE overrides of stage 2
eval_opts=""                 # extra recipes/sylber.sh options for stage 6, e.g. "--tier syllables"
tune_shift=false             # stage 6: tune the boundary shift on the first extra dev set
tune_thresholds=false        # stages 2-3: pick each model's thresholds on the first extra dev set (needs --alignments)
num_clusters=0               # k-means codebook size (stage 5; 0 skips it)
cluster_opts=""              # extra `speechunits cluster` flags
ngpu=1                       # GPUs per node for training (>1: DDP with torchrun)
nnodes=1                     # nodes per training (>1: multi-node DDP, needs a --train-cmd such as slurm)
device=auto                  # auto | cpu | cuda for training and tokenization
data_root=data               # Kaldi data dirs: <data-root>/<set>/ (extra sets are linked in here)
exp_root=exp                 # logs and model outputs: <exp-root>/sylber/...

help_message="Usage: bash egs/speechocean762/run.sh --corpus-dir DIR [options]
Stages:
  0  data prep: speechunits prepare-data --corpus speechocean762 for every --train-sets and
     --test-sets split -> <data-root>/so762_<split>/ (Kaldi files, manifest.jsonl, provenance.json)
  Stages 1-5 train the self-supervised teacher (recipes/hubert.sh stages 1-5; skipped with
  --teacher-init) on all train sets combined (speechunits combine-data -> <data-root>/train_all):
  1  HuBERT iteration-1 targets: MFCC k-means (--hubert-k1)
  2  HuBERT iteration 1 (--hubert-iter1-config)
  3  HuBERT iteration-2 targets: k-means (--hubert-k2) of layer --hubert-layer of iteration 1
  4  HuBERT iteration 2 -> <exp-root>/hubert/iter2/model.pt, the initial model of Sylber stage 1
  5  phone-purity probe of log-mel, MFCC and both iterations (with --probe-set and --probe-alignments)
  6  bootstrap segments of every train set (speechocean762 and --extra-train-sets), the test
     splits and the extra dev/test sets                              (recipes/sylber.sh, as are 7-11)
  7  Sylber stage 1 training on all train sets together (recipes/conf/sylber_stage1_real.yaml:
     noise, reverb, speed and pitch augmentation; the HuBERT of stage 4 or --teacher-init is the
     initial model)
  8  Sylber stage 2 training (recipes/conf/sylber_stage2_real.yaml)
  9  tokenization of the test splits and extra dev/test sets with the stage-1 and stage-2 models
  10 k-means (--num-clusters > 0) on the first train set, and quantization
  11 boundary evaluation of --extra-test-sets against --alignments -> <exp-root>/sylber/RESULTS.md
     (speechocean762 itself has no time alignments; without both options stage 11 is skipped)
Extra sets are data dirs made elsewhere (e.g. by egs/synth/run.sh stage 0); each is linked as
<data-root>/<its folder name>, so their names must differ from each other and from so762_<split>.
Ablations: --stage1-opts \"task.augment.reverb.prob=0\" (see egs/speechocean762/README.md).
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (frame-units, bootstrap-segments, tokenize),
  --train-cmd each training (speechunits launch: --ngpu GPUs per node on --nnodes nodes); both
  default to those of cmd.sh, chosen by SPEECHUNITS_CMD_BACKEND=local|slurm (site settings of Slurm
  in conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\" --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
user_paths "$CALLER_DIR" corpus_dir alignments teacher_init stage1_config stage2_config data_root exp_root \
  hubert_iter1_config hubert_iter2_config probe_alignments

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
if [[ -n "$teacher_init" && ! -e "$teacher_init" ]]; then
  echo "$0: --teacher-init $teacher_init does not exist" >&2
  exit 1
fi

# Stages 1-5: the self-supervised teacher, trained here unless --teacher-init names one.
if [[ -z "$teacher_init" ]]; then
  hubert_valid=$(link_sets $hubert_valid_set) || exit 1
  probe=$(link_sets $probe_set) || exit 1
  . ../../utils/path.sh
  if (( stage <= 4 && 1 <= stop_stage )); then
    # one training data dir for the targets and both iterations (the k-means codebooks span all of it)
    # shellcheck disable=SC2086
    run_logged "$exp_root/data/log/combine.train_all.log" speechunits combine-data "$data_root/train_all" \
      $(for s in $all_train; do echo "$data_root/$s"; done)
  fi
  if (( stop_stage >= 1 && stage <= 5 )); then
    ../../recipes/hubert.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$(( stop_stage < 5 ? stop_stage : 5 ))" \
      --nj "$nj" --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device" \
      --data-root "$data_root" --exp-dir "$exp_root/hubert" \
      --train-set train_all --valid-set "$hubert_valid" --iter1-config "$hubert_iter1_config" \
      --iter2-config "$hubert_iter2_config" --iter1-opts "$hubert_iter1_opts" --iter2-opts "$hubert_iter2_opts" \
      --k1 "$hubert_k1" --k2 "$hubert_k2" --iter2-layer "$hubert_layer" --probe-set "$probe" \
      --alignments "$probe_alignments"
  fi
  teacher_init="$exp_root/hubert/iter2/model.pt"
  if (( stage <= 7 && 7 <= stop_stage )) && [[ ! -f "$teacher_init" ]]; then
    echo "$0: missing $teacher_init; it is made by stage 4 (rerun with --stage 1, or give --teacher-init)" >&2
    exit 1
  fi
fi

common=(--nj "$nj" --cmd "$cmd" --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes" --device "$device"
        --data-root "$data_root" --exp-dir "$exp_root/sylber"
        --train-set "$all_train" --dev-sets "$(echo $extra_dev)" --init "$teacher_init"
        --stage1-config "$stage1_config" --stage2-config "$stage2_config"
        --stage1-opts "$stage1_opts" --stage2-opts "$stage2_opts"
        --num-clusters "$num_clusters" --cluster-opts "$cluster_opts"
        --alignments "$alignments" --tune-thresholds "$tune_thresholds")

if (( stage <= 10 && stop_stage >= 6 )); then
  # Sylber stages 1-5 (here 6-10) on everything; the speechocean762 test splits cannot be scored,
  # so Sylber stage 6 (here 11) runs apart
  ../../recipes/sylber.sh --stage "$(( stage > 6 ? stage - 5 : 1 ))" --stop-stage "$(( stop_stage < 10 ? stop_stage - 5 : 5 ))" \
    "${common[@]}" --test-sets "$(echo $(so762_names $test_sets) $extra_test)"
fi

if stage_begin 11 "boundary evaluation of the extra test sets: ${extra_test:-none}"; then
  if [[ -z "$alignments" || -z "$extra_test" ]]; then
    echo "stage 11: skipped: speechocean762 has no time alignments; score on a labelled real set with" \
         "--extra-test-sets DATA_DIR --alignments TEXTGRID_DIR"
  else
    # shellcheck disable=SC2086
    ../../recipes/sylber.sh --stage 6 --stop-stage 6 "${common[@]}" --test-sets "$(echo $extra_test)" \
      --tune-shift "$tune_shift" $eval_opts
  fi
fi
