#!/usr/bin/env bash
# Install lightkeeper and open the console on a demo: a few LightRAG users with real data
# (offline providers: no model, no network), the agent collecting, a gentle workload running.
# The first run installs about 40 packages into .venv: 2-4 minutes on a fresh machine (most of
# it pip); later runs take about 20 s before the console opens.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\033[1m[%s]\033[0m %s\n' "$1" "$2" >&2; }
if [ -x .venv/bin/lightkeeper ]; then
  step "1/3" "checking the installation in .venv (seconds)"
else
  step "1/3" "installing lightkeeper into .venv (first run: 2-4 minutes)"
fi
t0=$SECONDS
scripts/setup-venv.sh
step "1/3" "installed in $((SECONDS - t0)) s"
exec .venv/bin/lightkeeper demo --steps-before 1 "$@"  # the demo numbers its steps 2/3 and 3/3
