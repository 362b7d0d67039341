#!/usr/bin/env bash
# Run the test suite on the CPU (installs what it needs into .venv first).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the slow checks.
# Two workers, each taking whole test files (--dist loadfile): the tests of a file share
# its compiled programs, which a test-by-test split compiled in both workers.
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
