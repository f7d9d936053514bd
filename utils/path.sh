#!/usr/bin/env bash
# Source me: puts the speechunits virtualenv on PATH so `speechunits ...` resolves.
# The venv is $SPEECHUNITS_VENV if set, else <repo>/.venv (made by `make install`).
# Fails with the command to run when the `speechunits` entry point cannot be found.

__su_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
__su_venv="${SPEECHUNITS_VENV:-$__su_repo/.venv}"
if [[ -x "$__su_venv/bin/speechunits" ]]; then
  PATH="$__su_venv/bin:$PATH"
  export PATH
fi
if ! command -v speechunits >/dev/null 2>&1; then
  echo "error: the 'speechunits' command is not installed (looked in $__su_venv/bin and PATH); run 'make install' in $__su_repo" >&2
  return 1 2>/dev/null || exit 1
fi
unset __su_repo __su_venv
