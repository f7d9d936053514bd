#!/usr/bin/env bash
# Class-incremental SLU (COCONUT) on a synthetic corpus, on CPU: Festival/espeak-ng speech
# (no download, no real corpus), a tiny log-mel conformer (or unit-token encoder), every
# method with the same seeds, shared first task and memory budget.
#   --corpus fsc (default): FSC-shaped corpus, FSC-6 protocol (conf/slu_cil_tiny.yaml)
#   --corpus slurp: SLURP-shaped corpus, SLURP-3 over the 18 scenarios (conf/slu_cil_slurp_tiny.yaml)
#   bash egs/synth/run_slu.sh --seeds 0,1,2
#   bash egs/synth/run_slu.sh --corpus slurp --seeds 0,1,2
#   sweep=$(for s in 0.1,0.1,0.1 0.5,0.5,0.1 0.1,0.5,0.1 0.5,0.1,0.1 1.0,1.0,0.1 0.1,0.1,0.3; do IFS=, read n m t <<< "$s"
#     echo "n${n}_m${m}_t$t=losses.nspt=$n,losses.mm=$m,losses.nspt_temperature=$t,losses.mm_temperature=$t"; done)
#   bash egs/synth/run_slu.sh --seeds 0,1,2 --sweep "$sweep"   # the sweep behind conf/slu_cil_tiny.yaml's losses
#   bash egs/synth/run_slu.sh --input units --sylber-model exp/sylber/stage2/model.pt --num-clusters 200 --methods coconut
# Works from any directory (relative paths given as options are taken from the caller's
# directory, the defaults from this one); outputs go to egs/synth/{data,exp} unless overridden.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./cmd.sh || exit 1   # cmd, train_cmd: the defaults of --cmd and --train-cmd (SPEECHUNITS_CMD_BACKEND=local|slurm)

stage=0                   # first stage to run
stop_stage=100            # last stage to run
nj=2                      # synthesis jobs in stage 0, runs trained in parallel in stage 2
threads=1                 # torch threads per run (nj x threads <= cores)
ngpu=0                    # GPUs per node for each training run (>1: DDP, torchrun)
nnodes=1                  # nodes per training run (>1: multi-node DDP, needs a --train-cmd such as slurm)
seed=0                    # seed of the corpus generator
corpus=fsc                # fsc | slurp: which synthetic corpus and protocol
fsc_speakers=60           # fsc: synthetic speakers, split ~70/15/15 into train/valid/test
fsc_utts_per_speaker=50   # fsc: 60 x 50 = 3000 utterances over the 31 FSC intents
slurp_splits=train:600,devel:120,test:120  # slurp: sentences per split
slurp_recordings=2        # slurp: speakers reading each sentence
slu_config=""             # experiment config (default: conf/slu_cil_tiny.yaml, slurp: conf/slu_cil_slurp_tiny.yaml)
methods=""                # runs (recipes/slu_cil.sh --methods); default: ft, er at 1% and 2% memory (er, er_m2), er_kd,
                          # coconut, coconut_kd and joint (slurp: joint at 80 epochs: at 20 it stays at chance)
seeds=0                   # seeds of every run, e.g. 0,1,2 (RESULTS.md: mean +- std)
sweep=""                  # loss settings tried on the valid split first (recipes/slu_cil.sh --sweep)
sweep_seeds=0             # seeds of the sweep runs
overrides=""              # extra config overrides (key=value ...)
input=audio               # audio | units (the encoder reads unit sets; config --units-config)
units_dir=""              # unit sets <units-dir>/<set>/ (default: <data-root>/slu_units)
units_config=conf/slu_cil_units_tiny.yaml  # experiment config with --input units
sylber_model=""           # --input units: Sylber checkpoint that makes missing unit sets
num_clusters=0            # --input units: k-means codebook size of those unit sets
data_root=data            # corpus in <data-root>/slu_corpora, data dirs <data-root>/slu_<corpus>_<split>
exp_root=exp              # outputs: <exp-root>/slu_cil_<corpus>_<benchmark>[_units]/

help_message="Usage: bash egs/synth/run_slu.sh [options]
Stages (EXP = <exp-root>/slu_cil_<corpus>_<benchmark>, + _units with --input units):
  0  data prep: speechunits synth-corpus --layout fsc|slurp into <data-root>/slu_corpora, then
     speechunits prepare-data -> <data-root>/slu_fsc_{train,valid,test} or slu_slurp_{train,devel,test}
  1  (--input units) unit sets <units-dir>/<set>/ (recipes/slu_units.sh: speechunits tokenize with
     --sylber-model, cluster on train with --num-clusters, quantize; skipped when already quantized),
     then class split and BPE tokenizer (recipes/slu_cil.sh)
  2  shared first task of each seed, the --sweep runs and their choice on valid, then every run of
     --methods at every seed (recipes/slu_cil.sh) -> EXP/<run>/seed<k>/
  3  comparison over runs and seeds -> EXP/RESULTS.md, accuracy.png, matrix.png
Jobs (ESPnet style): --cmd runs the sharded corpus jobs (synth-corpus, tokenize), --train-cmd each
  training (the slu-cil runs, each a speechunits launch: --ngpu GPUs per node on --nnodes nodes);
  both default to those of cmd.sh, chosen by SPEECHUNITS_CMD_BACKEND=local|slurm (site settings of
  Slurm in conf/slurm.conf), e.g.
  --cmd \"slurm --mem 4G --time 2:00:00\" --train-cmd \"slurm --time 48:00:00\" --ngpu 4 --nnodes 2"

. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

if [[ $# -ne 0 ]]; then
  echo "$0: unexpected arguments: $*" >&2
  exit 1
fi
case "$corpus" in
  fsc) [[ -n "$slu_config" ]] || slu_config=conf/slu_cil_tiny.yaml; sets="train valid test"; joint=joint ;;
  slurp) [[ -n "$slu_config" ]] || slu_config=conf/slu_cil_slurp_tiny.yaml; sets="train devel test"
         joint=joint=joint,joint_epochs=80 ;;
  *) echo "$0: --corpus must be fsc or slurp, found '$corpus'" >&2; exit 1 ;;
esac
[[ -n "$methods" ]] || methods="ft er er_m2=er,memory.fraction=0.02 er_kd coconut coconut_kd $joint"
case "$input" in
  audio|units) ;;
  *) echo "$0: --input $input: expected audio | units" >&2; exit 1 ;;
esac
user_paths "$CALLER_DIR" slu_config data_root exp_root units_dir units_config sylber_model
[[ "$input" == units ]] && slu_config="$units_config"

benchmark=$(sed -n 's/^benchmark: *\([^ #]*\).*/\1/p' "$slu_config")
for o in $overrides; do [[ "$o" == benchmark=* ]] && benchmark="${o#benchmark=}"; done
if [[ -z "$benchmark" ]]; then
  echo "$0: $slu_config has no 'benchmark:' line; give one there or with --overrides benchmark=..." >&2
  exit 1
fi
set_names=()
for s in $sets; do set_names+=("slu_${corpus}_$s"); done
exp_dir="$exp_root/slu_cil_${corpus}_$benchmark"
[[ "$input" == units ]] && exp_dir+="_units"

CORPUS="$data_root/slu_corpora"
if stage_begin 0 "synthetic $corpus-shaped corpus and data dirs ${set_names[*]}"; then
  if [[ "$corpus" == fsc ]]; then
    run_logged "$exp_root/data/log/synth.slu_fsc.log" speechunits synth-corpus --layout fsc --out "$CORPUS" \
      --num-speakers "$fsc_speakers" --utts-per-speaker "$fsc_utts_per_speaker" --seed "$seed" --nj "$nj" \
      --cmd "$cmd"
    corpus_dir="$CORPUS/fluent_speech_commands_dataset"
  else
    run_logged "$exp_root/data/log/synth.slu_slurp.log" speechunits synth-corpus --layout slurp --out "$CORPUS" \
      --splits "$slurp_splits" --recordings-per-sentence "$slurp_recordings" --seed "$seed" --nj "$nj" \
      --cmd "$cmd"
    corpus_dir="$CORPUS/slurp"
  fi
  for s in $sets; do
    run_logged "$exp_root/data/log/prepare.slu_${corpus}_$s.log" speechunits prepare-data --corpus "$corpus" \
      --corpus-dir "$corpus_dir" --split "$s" --out "$data_root/slu_${corpus}_$s"
  done
fi

if [[ "$input" == units ]]; then  # unit-token input: unit sets, then the units config
  units_dir="$(realpath -m -- "${units_dir:-$data_root/slu_units}")"
  if stage_begin 1 "unit sets of ${set_names[*]} -> $units_dir"; then
    ../../recipes/slu_units.sh --data-root "$data_root" --sets "${set_names[*]}" \
      --units-dir "$units_dir" --sylber-model "$sylber_model" --num-clusters "$num_clusters" --nj "$nj" --cmd "$cmd"
  fi
  overrides="model.encoder.units_dir=$units_dir $overrides"
fi

if (( stop_stage >= 1 )); then
  ../../recipes/slu_cil.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" \
    --slu-config "$slu_config" --data-root "$data_root" --train-set "${set_names[0]}" --valid-set "${set_names[1]}" \
    --test-set "${set_names[2]}" --exp-dir "$exp_dir" --methods "$methods" --seeds "$seeds" --sweep "$sweep" \
    --sweep-seeds "$sweep_seeds" --nj "$nj" --threads "$threads" --overrides "$overrides" \
    --train-cmd "$train_cmd" --ngpu "$ngpu" --nnodes "$nnodes"
fi
