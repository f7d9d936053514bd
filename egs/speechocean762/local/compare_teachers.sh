#!/usr/bin/env bash
# Boundary scores of several syllable segmenters on a synthetic test set (syllable tier) and a
# real labelled set (syllables built from its MFA phone tier), with both matchings: the table
# of issue 14 (bootstrap vs Sylber from a log-mel or a self-supervised teacher).
#   bash local/compare_teachers.sh --systems "logmel1:../synth/exp/sylber/stage1/model.pt hubert2:exp/sylber_hubert2/stage1/model.pt" \
#       --synth-dev data/synth_dev --synth-test data/synth_test --synth-alignments ../synth/data/corpora/alignments \
#       --real-sets "data/realdev" --real-alignments /tmp/realdev/alignments --out exp/compare
# Every model is first tuned on the synthetic dev set (thresholds and shift, stored in the tuned
# checkpoint and applied when tokenizing); the real sets are never tuned on. Run from egs/speechocean762.
set -euo pipefail
systems=""            # NAME:CHECKPOINT ... (space-separated)
bootstrap_dir=exp/sylber/bootstrap  # bootstrap unit sets <dir>/<set name>/ (made by bootstrap-segments)
synth_dev=""; synth_test=""; synth_alignments=""
real_sets=""; real_alignments=""
out=exp/compare
device=cpu
. "$(dirname "${BASH_SOURCE[0]}")/../cmd.sh" || exit 1   # cmd: the default of --cmd (the tokenization jobs)
unset train_cmd   # nothing is trained here
. ../../utils/parse_options.sh
. ../../utils/stages.sh
. ../../utils/path.sh

mkdir -p "$out"
tuned() { echo "$out/models/$1.tuned.pt"; }
for s in $systems; do
  name="${s%%:*}" ckpt="${s#*:}"
  if [[ ! "$(tuned "$name")" -nt "$ckpt" ]]; then
    run_logged "$out/log/tune.$name.log" speechunits tune-segmentation --model "$ckpt" --data "$synth_dev" \
      --alignments "$synth_alignments" --tier syllables --device "$device" --json "$out/models/$name.tune.json" \
      --plot "$out/models/$name.tune.png" --export "$(tuned "$name")"
  fi
  for d in $synth_dev $synth_test $real_sets; do
    run_logged "$out/log/tokenize.$name.$(basename "$d").log" speechunits tokenize --model "$(tuned "$name")" \
      --data "$d" --out "$out/units/$name/$(basename "$d")" --device "$device" --nj 1 --cmd "$cmd"
  done
done

score() {  # NAME UNIT_ROOT SET MATCHING REFS...
  local name="$1" root="$2" set="$3" matching="$4"; shift 4
  run_logged "$out/log/eval.$name.$set.$matching.log" speechunits eval-boundaries --units "$root/$set" \
    --matching "$matching" --json "$out/eval/$name.$set.$matching.json" "$@"
}
for matching in max greedy; do
  for s in bootstrap $systems; do
    name="${s%%:*}"
    root="$out/units/$name"; [[ "$name" == bootstrap ]] && root="$bootstrap_dir"
    score "$name" "$root" "$(basename "$synth_test")" "$matching" --alignments "$synth_alignments" --tier syllables \
      --tune-shift-on "$root/$(basename "$synth_dev")"
    for d in $real_sets; do
      score "$name" "$root" "$(basename "$d")" "$matching" --alignments "$real_alignments" --syllabify-phones
    done
  done
done
for set in "$(basename "$synth_test")" $(for d in $real_sets; do basename "$d"; done); do
  for matching in max greedy; do
    rows=()
    for s in bootstrap $systems; do rows+=("${s%%:*}=$out/eval/${s%%:*}.$set.$matching.json"); done
    run_logged "$out/log/results.$set.$matching.log" speechunits results-table --out "$out/RESULTS.$set.$matching.md" \
      --plot "$out/scores.$set.$matching.png" --title "Syllable boundaries on $set ($matching matching)" "${rows[@]}"
  done
done
cat "$out"/RESULTS.*.md
