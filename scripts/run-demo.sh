#!/usr/bin/env bash
# Install lightkeeper and open the console on a demo: a few LightRAG users with real data
# (offline providers: no model, no network), the agent collecting, a gentle workload running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
exec .venv/bin/lightkeeper demo "$@"
