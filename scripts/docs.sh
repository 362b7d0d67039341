#!/usr/bin/env bash
# Build the documentation site into site/ (installs what it needs into .venv first):
# the theory notes in docs/, the README, the figure gallery and the API reference made
# from the docstrings. Warnings are errors (mkdocs --strict), so CI fails on a broken
# link, a missing page or a docstring the renderer cannot parse.
# Extra arguments go to `mkdocs build`; `scripts/docs.sh serve` previews it instead.
source "$(dirname "$0")/_venv.sh"
stamp=.venv/.installed-docs
if ! cmp -s pyproject.toml "$stamp" 2>/dev/null; then
  .venv/bin/python -m pip install -q -e ".[docs]"
  cp pyproject.toml "$stamp"
fi
# Material for MkDocs prints a banner about MkDocs 2.0 on every build; it is not a warning.
export NO_MKDOCS_2_WARNING=1
if [ "${1:-}" = serve ]; then
  shift
  exec .venv/bin/python -m mkdocs serve "$@"
fi
exec .venv/bin/python -m mkdocs build --strict --site-dir site "$@"
