#!/usr/bin/env bash
# Corpus locations, one variable per corpus. Edit them here for your site, or set the
# environment variables SPEECHUNITS_<CORPUS> (they win). Nothing is downloaded: each
# corpus must already be on disk in its published layout (see docs/data.md).
# An empty or missing location fails at once through require_corpus, with the layout.

LIBRISPEECH="${SPEECHUNITS_LIBRISPEECH:-}"   # dir holding LibriSpeech/<split>/ (or the LibriSpeech dir)
LJSPEECH="${SPEECHUNITS_LJSPEECH:-}"         # the LJSpeech-1.1 dir (metadata.csv, wavs/)
FSC="${SPEECHUNITS_FSC:-}"                   # the fluent_speech_commands_dataset dir (data/, wavs/)
SLURP="${SPEECHUNITS_SLURP:-}"               # the SLURP dir (dataset/slurp/*.jsonl, audio/)
SPEECHOCEAN762="${SPEECHUNITS_SPEECHOCEAN762:-}"  # the speechocean762 dir (train/, test/, WAVE/; OpenSLR SLR101)

# require_corpus NAME PATH EXPECTED_LAYOUT_TEXT
# Returns 0 when PATH is an existing directory; otherwise prints what is wrong, how to set
# it and the expected layout on stderr and returns 1 (call as `require_corpus ... || exit 1`).
require_corpus() {
  local name="$1" path="$2" layout="$3" var
  var="SPEECHUNITS_$(echo "$name" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9\n' '_')"
  local problem=""
  if [[ -z "$path" ]]; then
    problem="the $name corpus location is not set (pass --corpus-dir DIR, set $var, or edit egs/db.sh)"
  elif [[ ! -e "$path" ]]; then
    problem="$path: $name corpus directory does not exist"
  elif [[ ! -d "$path" ]]; then
    problem="$path: expected the $name corpus directory, found a file"
  fi
  if [[ -n "$problem" ]]; then
    {
      echo "error: $problem"
      echo "expected layout of $name:"
      echo "$layout" | sed 's/^/  /'
    } >&2
    return 1
  fi
  return 0
}
