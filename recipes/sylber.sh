#!/usr/bin/env bash
# Sylber syllable units: the corpus-agnostic stages (ESPnet TEMPLATE style).
#
# Called by egs/<corpus>/run.sh from that directory, after its stage 0 (data prep) wrote
# Kaldi data dirs <data-root>/<set>/. Relative paths are relative to the caller's cwd.
# Every stage calls a `speechunits` command; those skip outputs that are already complete
# for the same configuration (provenance.json), so rerunning a stage is cheap.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)"

# Options (--name value, Kaldi style; see utils/parse_options.sh)
stage=1            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel jobs for segmentation
data_root=data     # holds one Kaldi data dir per set: <data-root>/<set>/
exp_dir=exp/sylber # outputs: units, logs, RESULTS.md
dev_sets=""        # space-separated data dir names segmented in stage 1 (shift tuning in 6)
test_sets=""       # space-separated data dir names segmented in stage 1 and scored in 6
alignments=""      # dir searched for <utt-id>.TextGrid references (stage 6; empty: skip 6)
tier=syllables     # TextGrid tier holding the reference syllables
tolerance=0.05     # boundary tolerance in seconds (stage 6)
tune_shift=false   # true: pick the boundary shift on the first dev set, then apply it
bootstrap_opts=""  # extra flags for `speechunits bootstrap-segments` (see its --help)

help_message="Usage: recipes/sylber.sh [options]   (normally called by egs/<corpus>/run.sh)
Stages:
  1  bootstrap segments: speechunits bootstrap-segments on each dev and test set
       -> <exp-dir>/bootstrap/<set>/ (unit set, kind syllable, segments only)
  6  evaluate: speechunits eval-boundaries of the stage-1 units of each test set against
       the TextGrids under --alignments -> <exp-dir>/eval/*.json and <exp-dir>/RESULTS.md
(Stages 2-5 -- training stage 1/2, tokenization, k-means -- are not implemented yet.)"

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
log_dir="$exp_dir/log"

for set in $dev_sets $test_sets; do
  if (( stage <= 1 && 1 <= stop_stage )) && [[ ! -f "$data_root/$set/provenance.json" ]]; then
    echo "$0: data dir $data_root/$set is missing or incomplete; run stage 0 of the egs/<corpus>/run.sh first" >&2
    exit 1
  fi
done

if stage_begin 1 "bootstrap syllable segments of: $dev_sets $test_sets"; then
  for set in $dev_sets $test_sets; do
    out="$exp_dir/bootstrap/$set"
    # shellcheck disable=SC2086
    bootstrap=(speechunits bootstrap-segments --data "$data_root/$set" --out "$out" --nj "$nj" $bootstrap_opts)
    # each job skips at once when $out is already complete for this configuration
    run_jobs "$nj" "$log_dir/bootstrap.$set.JOB.log" "${bootstrap[@]}" --job JOB
    run_logged "$log_dir/bootstrap.$set.log" "${bootstrap[@]}"   # merges and validates the shards
    echo "stage 1: units of $set in $out"
  done
fi

if stage_begin 6 "evaluate boundaries of: $test_sets"; then
  if [[ -z "$alignments" ]]; then
    echo "stage 6: skipped, no --alignments given (reference TextGrids are needed to score boundaries)"
  else
    results="$exp_dir/RESULTS.md"
    tmp_results="$results.tmp.$$"
    trap 'rm -f "$tmp_results"' EXIT
    {
      echo "# Sylber boundary evaluation ($exp_dir)"
      echo
      echo "Units: acoustic bootstrap segmenter (stage 1). References: tier '$tier' of the TextGrids"
      echo "under $alignments. Tolerance $tolerance s. Written by recipes/sylber.sh stage 6 on $(date '+%F %T')."
    } > "$tmp_results"
    for set in $test_sets; do
      units="$exp_dir/bootstrap/$set"
      ref="$alignments"
      [[ -d "$alignments/$set" ]] && ref="$alignments/$set"
      eval_cmd=(speechunits eval-boundaries --units "$units" --alignments "$ref" --tier "$tier"
                --tolerance "$tolerance" --json "$exp_dir/eval/bootstrap.$set.json")
      if [[ "$tune_shift" == true ]]; then
        dev_first="${dev_sets%% *}"
        if [[ -z "$dev_first" ]]; then
          echo "$0: --tune-shift true needs --dev-sets" >&2
          exit 1
        fi
        eval_cmd+=(--tune-shift-on "$exp_dir/bootstrap/$dev_first")
      fi
      table="$exp_dir/eval/bootstrap.$set.txt"
      run_logged "$log_dir/eval.$set.log" save_stdout "$table" "${eval_cmd[@]}"
      { echo; echo "## $set"; echo; echo '```'; cat "$table"; echo '```'; } >> "$tmp_results"
    done
    mv "$tmp_results" "$results"
    echo "stage 6: results in $results"
    cat "$results"
  fi
fi
