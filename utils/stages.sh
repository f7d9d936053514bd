#!/usr/bin/env bash
# Source me (after utils/parse_options.sh): helpers shared by egs/*/run.sh and recipes/*.sh.
#   stage_begin N "what"        true when stage N lies in [$stage, $stop_stage]; announces it
#   run_logged LOG cmd ...      run cmd, output shown and appended to LOG; names LOG on failure
#   run_jobs NJ LOG cmd ...     NJ copies of cmd in parallel, the word JOB in LOG and in the
#                               arguments replaced by 0..NJ-1 (Kaldi run.pl style); waits for all
#   pool_init N; pool_run LOG cmd ...; pool_wait
#                               run_logged commands N at a time in the background (N <= 1: one by one in
#                               the foreground); pool_wait waits for them and is false when any failed
#   save_stdout FILE cmd ...    run cmd with its stdout saved to FILE (atomically) and shown
#   user_paths DIR var ...      relative paths given on the command line (not defaults) are
#                               made absolute against DIR, the caller's cwd before run.sh cd'ed
# Skipping finished work is the job of the Python commands (provenance.json), not of bash.

stage_begin() {  # N description
  local n="$1"; shift
  if (( n < stage || n > stop_stage )); then
    return 1
  fi
  echo "=== $(date '+%F %T') stage $n: $* ==="
  return 0
}

run_logged() {  # LOG cmd ...
  local log="$1"; shift
  mkdir -p "$(dirname "$log")"
  echo "+ $* (log: $log)"
  printf '# %s  cwd %s\n# %s\n' "$(date '+%F %T')" "$PWD" "$*" >> "$log"
  local rc=0
  { "$@" 2>&1 | tee -a "$log"; rc=${PIPESTATUS[0]}; } || true
  if (( rc != 0 )); then
    echo "error: '$1' failed with exit status $rc; see $log" >&2
    return "$rc"
  fi
}

run_jobs() {  # NJ LOG(with JOB) cmd ... (JOB replaced)
  local nj="$1" log="$2"; shift 2
  local j pids=() logs=() failed=0
  for (( j = 0; j < nj; j++ )); do
    local l="${log//JOB/$j}"
    local args=("${@//JOB/$j}")
    mkdir -p "$(dirname "$l")"
    printf '# %s  cwd %s\n# %s\n' "$(date '+%F %T')" "$PWD" "${args[*]}" >> "$l"
    "${args[@]}" >> "$l" 2>&1 &
    pids+=("$!"); logs+=("$l")
  done
  echo "+ $* (JOB=0..$((nj - 1)); logs: ${log//JOB/*})"
  for j in "${!pids[@]}"; do
    if ! wait "${pids[$j]}"; then
      echo "error: job $j of $nj failed; see ${logs[$j]}" >&2
      failed=1
    fi
  done
  return "$failed"
}

pool_init() {  # N
  __pool_max="$1"; __pool_running=0; __pool_failed=0
}

pool_run() {  # LOG cmd ...   (run_logged; in the background, output in LOG only: progress bars would interleave)
  if (( __pool_max > 1 )); then
    if (( __pool_running >= __pool_max )); then
      wait -n || __pool_failed=1
      __pool_running=$(( __pool_running - 1 ))
    fi
    run_logged "$@" > /dev/null &
    __pool_running=$(( __pool_running + 1 ))
  else
    run_logged "$@"
  fi
}

pool_wait() {  # false when a pooled command failed
  while (( __pool_running > 0 )); do
    wait -n || __pool_failed=1
    __pool_running=$(( __pool_running - 1 ))
  done
  (( __pool_failed == 0 ))
}

save_stdout() {  # FILE cmd ...   run cmd, its stdout written to FILE (atomically) and shown
  local file="$1"; shift
  mkdir -p "$(dirname "$file")"
  "$@" > "$file.tmp.$$" || { local rc=$?; rm -f "$file.tmp.$$"; return "$rc"; }
  mv "$file.tmp.$$" "$file"
  cat "$file"
}

user_paths() {  # CALLER_DIR var ...
  local dir="$1" v val; shift
  for v in "$@"; do
    val="${!v}"
    case " ${PO_GIVEN:-} " in *" $v "*) ;; *) continue ;; esac
    if [[ -n "$val" && "$val" != /* ]]; then
      printf -v "$v" '%s' "$(realpath -m -s -- "$dir/$val")"
    fi
  done
}

need() {  # PATH STAGE-THAT-MAKES-IT: fail clearly when an input of a later stage is missing
  if [[ ! -e "$1" ]]; then
    echo "$0: missing $1; it is made by stage $2 (rerun with --stage $2)" >&2
    exit 1
  fi
}
