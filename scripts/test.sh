#!/usr/bin/env bash
# Run the test suite on the CPU (installs what it needs into .venv first).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the slow checks.
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python -m pytest -q -n 2 "$@"
