# speechunits: install, demo and test.
#
#   make install     system packages (apt, when missing), $(VENV), pip install -e '.[test,fairseq2]'
#   make demo        install, then bash egs/synth/run.sh (synthetic corpus -> units -> scores)
#   make demo-unit2speech  the demo, then its unit-to-speech stages 7-13 (vocoders, judge, RESULTS.md)
#   make demo-tts    demo-unit2speech, then its Capacitron TTS stages 14-19 (tiny Tacotron2/Capacitron, RESULTS.md)
#   make test        install, then the full test suite (slow tests included); CI=$CI passed on
#   make test-fast   install, then the suite without tests marked slow
#   make clean       remove recipe outputs (egs/*/data, egs/*/exp)
#
# Every step of `install` is idempotent: apt runs only when a package is missing, the
# virtualenv is created only when absent, and pip runs only when pyproject.toml changed
# since the last successful install (stamp file $(VENV)/.installed-<sha256 of pyproject>).
#
# Variables: PYTHON (interpreter for the venv; default python3.11, else python3 if it is
# 3.11), VENV (default .venv). Example: make install VENV=/tmp/venv PYTHON=/usr/bin/python3.11

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?=
VENV ?= .venv
CI ?=

APT_PACKAGES := festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng sox libsndfile1 util-linux slurm-wlm munge
# binaries checked where dpkg is unavailable (non-Debian systems)
APT_BINARIES := festival espeak-ng sox unshare sbatch slurmctld slurmd munged

PYPROJECT_SHA := $(firstword $(shell sha256sum pyproject.toml))
STAMP := $(VENV)/.installed-$(PYPROJECT_SHA)

.PHONY: help install system-deps venv demo demo-unit2speech demo-tts test test-fast clean

help:
	@echo "make install    system packages ($(APT_PACKAGES)), $(VENV), pip install -e '.[test,fairseq2]'"
	@echo "make demo       install + bash egs/synth/run.sh (synthetic corpora -> Sylber training -> units -> scores)"
	@echo "make demo-unit2speech  make demo, then its unit-to-speech stages (vocoders, CTC judge, RESULTS.md)"
	@echo "make demo-tts   make demo-unit2speech, then its Capacitron TTS stages (voiced by its mel vocoder, judged by its judge)"
	@echo "make test       install + full test suite (slow tests included)"
	@echo "make test-fast  install + tests not marked slow"
	@echo "make clean      remove egs/*/data and egs/*/exp"

install: system-deps venv $(STAMP)
	@echo "install: $(VENV) is up to date with pyproject.toml"

# (a) System packages: apt-get only when one is missing, and only as root.
system-deps:
	@missing=""; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	  for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	  done; \
	else \
	  for b in $(APT_BINARIES); do command -v "$$b" >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	fi; \
	if [[ -z "$$missing" ]]; then echo "system-deps: all present ($(APT_PACKAGES))"; exit 0; fi; \
	echo "system-deps: missing:$$missing"; \
	if [[ "$$(id -u)" -ne 0 ]]; then \
	  echo "system-deps: not root; install them with:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
	  exit 1; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: apt-get not found; install these packages with your package manager:$$missing" >&2; \
	  exit 1; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update && apt-get install -y --no-install-recommends $$missing

# (b) The virtualenv, created with Python 3.11 only when absent.
venv: $(VENV)/bin/python

$(VENV)/bin/python:
	@py="$(PYTHON)"; \
	if [[ -z "$$py" ]]; then \
	  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; \
	  elif command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then py=python3; \
	  else echo "venv: Python 3.11 not found (python3.11, or python3 being 3.11); set PYTHON=/path/to/python3.11" >&2; exit 1; fi; \
	fi; \
	"$$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "venv: $$py is $$("$$py" -V 2>&1), speechunits needs Python 3.11" >&2; exit 1; }; \
	echo "venv: $$py -m venv $(VENV)"; \
	"$$py" -m venv "$(VENV)"

# (c) pip install only when pyproject.toml changed since the last successful install.
$(STAMP): | $(VENV)/bin/python
	@echo "pip: installing -e '.[test,fairseq2]' into $(VENV) (pyproject.toml sha256 $(PYPROJECT_SHA))"
	$(VENV)/bin/python -m pip install -e '.[test,fairseq2]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	bash egs/synth/run.sh

demo-unit2speech: install
	bash egs/synth/run.sh --unit2speech true

demo-tts: install
	bash egs/synth/run.sh --unit2speech true --tts true

test: install
	CI="$(CI)" $(VENV)/bin/python -m pytest -q

test-fast: install
	CI="$(CI)" $(VENV)/bin/python -m pytest -q -m "not slow"

clean:
	rm -rf egs/*/data egs/*/exp
