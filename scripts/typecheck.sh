#!/usr/bin/env bash
# mypy over the installed tree (the package-dir mapping puts agent/ at lightkeeper/agent, which
# mypy cannot follow through the editable finder), with [tool.mypy] from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-compile \
  --target "$stage" .
(cd "$stage" && "$OLDPWD/.venv/bin/mypy" --config-file "$OLDPWD/pyproject.toml" \
  --cache-dir "$OLDPWD/.mypy_cache" -p lightkeeper "$@")
