#!/usr/bin/env bash
# Create .venv (if needed) and install lightkeeper into it. Used by run-demo.sh and test.sh.
# Usage: scripts/setup-venv.sh [EXTRAS]   e.g. scripts/setup-venv.sh test
# On a terminal it shows one progress line (packages resolved, then installing); pip's full
# output goes to .venv/pip-install.log and its tail is printed if the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian ships venv support separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && python3 -m venv .venv
    else
      echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
log=.venv/pip-install.log
if [ ! -t 2 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
  exit 0
fi
status=0
.venv/bin/python -m pip install --disable-pip-version-check -e "$spec" >"$log" 2>&1 &
pip_pid=$!
start=$SECONDS
while kill -0 "$pip_pid" 2>/dev/null; do
  n=$(grep -c '^Collecting \|^Requirement already satisfied' "$log" 2>/dev/null || true)
  last=$(grep '^Collecting ' "$log" 2>/dev/null | tail -1 | cut -d' ' -f2 | cut -c1-30 || true)
  if grep -q '^Installing collected packages' "$log" 2>/dev/null; then
    what="installing the packages"
  else
    what="resolving: ${n:-0} packages${last:+ (${last})}"
  fi
  printf '\r\033[K      %s, %d s' "$what" $((SECONDS - start)) >&2
  sleep 1
done
wait "$pip_pid" || status=$?
printf '\r\033[K' >&2
if [ "$status" -ne 0 ]; then
  grep -v '^WARNING: Location' "$log" | tail -20 >&2
  echo "pip install failed (exit $status); full output in $log" >&2
  exit "$status"
fi
