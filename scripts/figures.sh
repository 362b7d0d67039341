#!/usr/bin/env bash
# Make every figure (installs what it needs into .venv first).
# Extra arguments go to `python -m figures`, e.g. `--only phase_diagram` or `--paper`.
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python -m figures "$@"
