#!/usr/bin/env bash
# Kaldi-style option parser. Source it after declaring defaults:
#   --foo-bar 3 / --foo-bar=3 sets foo_bar=3 (only if foo_bar is declared);
#   booleans (default true/false) accept only true/false;
#   --config FILE sources name=value lines; --help/-h prints $help_message
#   and the options with current values (and the '# comment' on each 'name=value' line of
#   the script), then exits 0. Only lower-case variables declared before sourcing are options
#   (use UPPER_CASE for internal ones). Positionals stay in $@. $PO_GIVEN lists the names
#   of the options set on the command line.

__po_declared=$(compgen -v | tr '\n' ' ')
__po_names=""
for __po_v in $__po_declared; do
  case "$__po_v" in
    __po_*|BASH*|FUNCNAME|PIPESTATUS|GROUPS|DIRSTACK|RANDOM|LINENO|SECONDS|PWD|OLDPWD|HOME|PATH|SHELL*|IFS|PS*|UID|EUID|PPID|HOST*|OSTYPE|MACHTYPE|SHLVL|TERM|USER|LANG|LC_*|_|COLUMNS|LINES|OPT*|help_message|COMP*|HIST*|MAIL*|EPOCH*|SRANDOM|BASHOPTS) ;;
    [a-z]*) __po_names="$__po_names $__po_v" ;;
  esac
done
__po_list() {  # one line per option; a trailing '# comment' on its 'name=value' line describes it
  local n d f=""
  # the script: $0, or its basename after the script changed into its own directory
  if [[ -f "$0" ]]; then f="$0"; elif [[ -f "./${0##*/}" ]]; then f="./${0##*/}"; fi
  for n in $__po_names; do
    d=""
    [[ -n "$f" ]] && d=$(sed -n "s/^${n}=[^#]*#[[:space:]]*//p" "$f" | head -n 1)
    echo "  --${n//_/-} (current: '${!n}')${d:+  $d}"
  done
}
__po_set() {  # name value (locals are __po_-prefixed: an option may be called name, value, ...)
  local __po_name="$1" __po_value="$2" __po_old
  case " $__po_names " in *" $__po_name "*) ;; *)
    echo "$0: unknown option --${__po_name//_/-}; valid options:" >&2; __po_list >&2; exit 1 ;; esac
  __po_old="${!__po_name}"
  if [[ "$__po_old" == true || "$__po_old" == false ]] && [[ "$__po_value" != true && "$__po_value" != false ]]; then
    echo "$0: option --${__po_name//_/-} is boolean; expected true or false, got '$__po_value'" >&2; exit 1
  fi
  printf -v "$__po_name" '%s' "$__po_value"
  PO_GIVEN="$PO_GIVEN $__po_name"
}
PO_GIVEN=""  # names of the options given on this command line (see utils/stages.sh: user_paths)
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help)
      [[ -n "${help_message:-}" ]] && echo "$help_message"
      echo "Options:"; __po_list; exit 0 ;;
    --config)
      [[ $# -ge 2 && -f "$2" ]] || { echo "$0: --config: file not found: ${2:-<missing>}" >&2; exit 1; }
      # shellcheck disable=SC1090
      source "$2"; shift 2 ;;
    --config=*)
      __po_f="${1#--config=}"; [[ -f "$__po_f" ]] || { echo "$0: --config: file not found: $__po_f" >&2; exit 1; }
      source "$__po_f"; shift ;;
    --*=*) __po_k="${1%%=*}"; __po_k="${__po_k#--}"; __po_set "${__po_k//-/_}" "${1#*=}"; shift ;;
    --?*)
      [[ $# -ge 2 ]] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      __po_k="${1#--}"; __po_set "${__po_k//-/_}" "$2"; shift 2 ;;
    *) break ;;
  esac
done
true
