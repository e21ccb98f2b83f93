#!/usr/bin/env bash
# mypy over the installed tree (the package-dir mapping puts agent/ at lightkeeper/agent, which
# mypy cannot follow through the editable finder), with [tool.mypy] from pyproject.toml.
# Usage: scripts/typecheck.sh [--stage DIR] [MYPY ARGS...]
#   --stage DIR: check a tree already installed with `pip install --target DIR .` (test.sh
#   passes the one it checks the layers on) instead of installing one here.
# The cache (.mypy_cache, gitignored) makes a re-run take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
stage=""
if [ "${1:-}" = "--stage" ]; then
  stage=$2
  shift 2
fi
if [ -z "$stage" ]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-compile \
    --target "$stage" .
fi
(cd "$stage" && "$repo/.venv/bin/mypy" --config-file "$repo/pyproject.toml" \
  --cache-dir "$repo/.mypy_cache" -p lightkeeper "$@")
