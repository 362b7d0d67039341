# Sourced by the scripts beside it: make (once) a virtual environment in
# .venv with this project installed in editable mode with its test extras,
# and reinstall when pyproject.toml has changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Python >= 3.11 is needed; set PYTHON=/path/to/python3.11+" >&2; exit 1; }
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=.venv/.installed-pyproject
if ! cmp -s pyproject.toml "$stamp" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  cp pyproject.toml "$stamp"
fi
export MPLBACKEND=Agg
