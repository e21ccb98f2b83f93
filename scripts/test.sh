#!/usr/bin/env bash
# Install what the tests need (system packages included) and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/agent -x
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use for real: sshd (SFTP zones), PostgreSQL (pg_dump), promtool
# (alert rules), Alertmanager (alert delivery), systemd-analyze (the unit file), tmux (console
# smoke test), restic and rsync (benchmark references).
missing=()
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v tmux >/dev/null || missing+=(tmux)
command -v restic >/dev/null || missing+=(restic)
command -v rsync >/dev/null || missing+=(rsync)
command -v pgrep >/dev/null || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

scripts/setup-venv.sh test
.venv/bin/ruff check .

# The layers (docs/architecture.md) and the types are checked on the installed tree, where the
# folders of the layout sit under the one `lightkeeper` package as users get them.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-compile \
  --target "$stage" .
(cd "$stage" && PYTHONPATH="$stage" "$OLDPWD/.venv/bin/lint-imports" \
  --config "$OLDPWD/pyproject.toml" --no-cache)
# Types (mypy, [tool.mypy] in pyproject.toml) on the same installed tree.
scripts/typecheck.sh --stage "$stage"

.venv/bin/python -m pytest "$@"
