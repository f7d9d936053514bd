#!/usr/bin/env bash
# Stage 0 of egs/librispeech: one Kaldi data dir (+ manifest.jsonl, provenance.json) per
# LibriSpeech split, <data-root>/<split>/, via `speechunits prepare-data`.
# Checks the corpus directory and every requested split BEFORE writing anything, so a wrong
# --corpus-dir fails at once with the expected layout and leaves no output behind.
set -euo pipefail

UTILS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../utils" && pwd)"
EGS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

corpus_dir=""      # the LibriSpeech dir, or the dir holding LibriSpeech/
sets=""            # space-separated split names, e.g. "dev-clean test-clean"
alignments=""      # optional MFA-style TextGrids: <dir>/<split>/<spk>/<chap>/<utt>.TextGrid
data_root=data     # output: <data-root>/<split>/
log_dir=exp/data/log  # logs of prepare-data
with_durations=false  # true: read audio headers for utt2dur/utt2num_samples

help_message="Usage: local/data.sh --corpus-dir DIR --sets 'SPLIT ...' [options]"

. "$UTILS/parse_options.sh"
. "$UTILS/stages.sh"
. "$UTILS/path.sh"
. "$EGS/db.sh"

LAYOUT="LibriSpeech/                       (--corpus-dir may point here or at its parent)
  <split>/                         e.g. train-clean-100 dev-clean test-clean
    <speaker>/<chapter>/
      <speaker>-<chapter>-<utt>.flac
      <speaker>-<chapter>.trans.txt  one '<speaker>-<chapter>-<utt> TRANSCRIPT' line per utterance
optional --alignments DIR: DIR/<split>/<speaker>/<chapter>/<utt-id>.TextGrid (tiers words/syllables/phones)"

require_corpus LibriSpeech "$corpus_dir" "$LAYOUT" || exit 1
if [[ -z "$sets" ]]; then
  echo "error: no LibriSpeech splits requested (--train-sets/--dev-sets/--test-sets are all empty)" >&2
  exit 1
fi
missing=""
for split in $sets; do
  [[ -d "$corpus_dir/$split" || -d "$corpus_dir/LibriSpeech/$split" ]] || missing="$missing $split"
done
if [[ -n "$missing" ]]; then
  found=$(cd "$corpus_dir" && ls -d -- */ LibriSpeech/*/ 2>/dev/null | tr '\n' ' ')
  {
    echo "error: $corpus_dir: LibriSpeech split(s) not found:$missing (found: ${found:-nothing})"
    echo "expected layout of LibriSpeech:"
    echo "$LAYOUT" | sed 's/^/  /'
  } >&2
  exit 1
fi
if [[ -n "$alignments" && ! -d "$alignments" ]]; then
  echo "error: $alignments: alignments directory does not exist (expected <split>/<speaker>/<chapter>/<utt-id>.TextGrid)" >&2
  exit 1
fi

for split in $sets; do
  args=(speechunits prepare-data --corpus librispeech --corpus-dir "$corpus_dir" --split "$split"
        --out "$data_root/$split")
  [[ -n "$alignments" ]] && args+=(--alignments "$alignments")
  [[ "$with_durations" == true ]] && args+=(--with-durations)
  run_logged "$log_dir/prepare.$split.log" "${args[@]}"
done
