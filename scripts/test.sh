#!/usr/bin/env bash
# Run the test suite on the CPU (installs what it needs into .venv first).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the slow checks.
# Two workers, each taking whole test files (--dist loadfile): the tests of a file share
# its compiled programs, which a test-by-test split compiled in both workers.
# A worker that crashes is not replaced (--max-worker-restart=0): with whole-file
# scheduling a replaced worker can leave pytest-xdist waiting forever, so a crash
# ends the run at once, naming the test it happened in.
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile --max-worker-restart=0 "$@"
