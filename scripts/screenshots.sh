#!/usr/bin/env bash
# Seed a demo state in a temporary directory (demo users with real LightRAG data, a background
# workload, a tuning change, a verified backup, an unreachable zone) and write an SVG
# screenshot of every console screen into screenshots/.
#   scripts/screenshots.sh            screenshots only
#   scripts/screenshots.sh --record   also refresh tests/tui/recorded/demo.json, the data the
#                                     snapshot tests replay (then run pytest --snapshot-update)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup-venv.sh
PY=.venv/bin/python
lk() { "$PY" -m lightkeeper.cli.main "$@"; }

tmp=$(mktemp -d /tmp/lkshots.XXXXXX)
export LIGHTKEEPER_PATHS__STATE_DIR="$tmp/state"
export LIGHTKEEPER_PATHS__DATA_ROOT="$tmp/data"
export LIGHTKEEPER_AGENT__SOCKET="$tmp/agent.sock"
export LIGHTKEEPER_HTTP__ENABLED=false
# a zone nobody answers for: the Zones screen shows what an outage looks like
closed_port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LIGHTKEEPER_ZONES__OFFSITE__HOST=127.0.0.1
export LIGHTKEEPER_ZONES__OFFSITE__PORT="$closed_port"
export LIGHTKEEPER_ZONES__OFFSITE__USER="${USER:-$(id -un)}"
export LIGHTKEEPER_ZONES__OFFSITE__REMOTE_PATH=/srv/lightkeeper/repo
export TZ=UTC
mkdir -p "$tmp/data"

cleanup() {
  lk demo --stop >/dev/null 2>&1 || true
  lk agent --stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

lk agent --detach
lk demo --no-console --rate 2
echo "collecting for 40 s..."
sleep 20
lk tuning set top_k=60 chunk_top_k=30 --note "more context for long questions" >/dev/null
sleep 20
lk backup run >/dev/null
lk backup verify >/dev/null
lk replicate >/dev/null 2>&1 || true   # the zone is down: recorded as a failure
lk demo --stop >/dev/null

args=(--out screenshots)
if [ "${1:-}" = "--record" ]; then
  args+=(--record tests/tui/recorded/demo.json)
  mkdir -p tests/tui/recorded
fi
"$PY" -m lightkeeper.tui.shots "${args[@]}"
