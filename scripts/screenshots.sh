#!/usr/bin/env bash
# Seed a healthy demo in a temporary directory and write an SVG screenshot of every console
# screen into screenshots/ (tui/shots.py drives the console). The scenes:
#   - demo users with real LightRAG data and a background workload, under two tuning versions
#     (the LightRAG charts mark the change; the Tuning screen can compare them);
#   - a zone served by a real OpenSSH server on 127.0.0.1, synced after each backup: it is in
#     sync, and its lag chart shows the lag grow after each backup and drop at each sync;
#   - a history of snapshots on the Backups screen, then a backup running with its progress;
#   - the tuning form with a pending diff; the overview at 80x24 too.
# Every step waits for its real condition (operations counted, samples stored, jobs finished),
# never a fixed time. About 5 minutes (the zone is probed once a minute).
#   scripts/screenshots.sh            screenshots only
#   scripts/screenshots.sh --record   also refresh tests/tui/recorded/demo.json, the data the
#                                     snapshot tests replay (then run pytest --snapshot-update)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup-venv.sh
PY=.venv/bin/python
lk() { "$PY" -m lightkeeper.cli.main "$@"; }
for tool in /usr/sbin/sshd /usr/lib/openssh/sftp-server ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "screenshots.sh: $tool is needed for the demo zone" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/lkshots.XXXXXX)
sshd_pid=""
cleanup() {
  lk demo --stop >/dev/null 2>&1 || true
  lk agent --stop >/dev/null 2>&1 || true
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

export HOME="$tmp/home" XDG_STATE_HOME="$tmp/xdg-state"  # no operator preferences
export LIGHTKEEPER_PATHS__STATE_DIR="$tmp/state"
export LIGHTKEEPER_PATHS__DATA_ROOT="$tmp/data"
export LIGHTKEEPER_AGENT__SOCKET="$tmp/agent.sock"
export LIGHTKEEPER_HTTP__ENABLED=false
export LIGHTKEEPER_REPLICATION__STATUS_SCHEDULE="every 1m"  # the shortest: lag samples for the chart
export LIGHTKEEPER_AGENT__PROBE_INTERVAL=1
export TZ=UTC
mkdir -p "$HOME" "$tmp/data"

# wait_for WHAT SECONDS PYTHON-EXPRESSION: until the expression (with c, the agent client) is
# true; fails naming WHAT otherwise
wait_for() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import sys, time
from lightkeeper.client import connect
from lightkeeper.config import load
what, timeout, expr = sys.argv[1], float(sys.argv[2]), sys.argv[3]
c = connect(load(), autostart=False)
def ops(version=None):
    rows = c.call("rag.summary", window="1h") or []
    return sum(int(r.get("count") or 0) for r in rows)
def lag_samples(zone):
    doc = c.series("zone_oldest_unreplicated_timestamp_seconds", None, "1h", agg="last")
    return [p for p in (doc.get("series") or {}).get(zone, []) if p[1] is not None]
deadline = time.monotonic() + timeout
while not eval(expr):
    if time.monotonic() > deadline:
        sys.exit(f"screenshots.sh: timed out after {timeout:g} s waiting for {what}")
    time.sleep(0.5)
EOF
}

# the zone: a real OpenSSH server on 127.0.0.1 with its own host key and authorized key
zone="$tmp/zone"
mkdir -p "$zone/remote"
ssh-keygen -q -t ed25519 -N "" -C lightkeeper-demo -f "$zone/host_key"
ssh-keygen -q -t ed25519 -N "" -C lightkeeper-demo -f "$zone/client_key"
cp "$zone/client_key.pub" "$zone/authorized_keys"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
root_login=no; [ "$(id -u)" = 0 ] && root_login=prohibit-password && mkdir -p /run/sshd
cat > "$zone/sshd_config" <<EOF
ListenAddress 127.0.0.1
HostKey $zone/host_key
PidFile $zone/sshd.pid
AuthorizedKeysFile $zone/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin $root_login
StrictModes no
UsePAM no
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -D -e -f "$zone/sshd_config" -p "$port" 2>"$zone/sshd.log" &
sshd_pid=$!
export LIGHTKEEPER_ZONES__OFFSITE__HOST=127.0.0.1
export LIGHTKEEPER_ZONES__OFFSITE__PORT="$port"
export LIGHTKEEPER_ZONES__OFFSITE__USER="${USER:-$(id -un)}"
export LIGHTKEEPER_ZONES__OFFSITE__KEY_FILE="$zone/client_key"
export LIGHTKEEPER_ZONES__OFFSITE__REMOTE_PATH="$zone/remote/repo"
"$PY" - "$port" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("screenshots.sh: the demo zone's sshd does not listen")
        time.sleep(0.1)
EOF

lk agent --detach
lk zones trust offsite --fingerprint "$(ssh-keygen -lf "$zone/host_key.pub" | awk '{print $2}')" >/dev/null
lk demo --no-console --rate 2
echo "scenes: snapshots, syncs and two tuning versions under the workload (about 4 minutes)..."
lk backup run >/dev/null
lk replicate >/dev/null
wait_for "LightRAG operations under version 1" 120 'ops() >= 100'
lk tuning set top_k=60 chunk_top_k=30 --note "more context for long questions" >/dev/null
lk backup run >/dev/null          # the zone lacks it: its lag grows until the next sync
wait_for "the zone's lag on the chart (probed each minute)" 180 'len([p for p in lag_samples("offsite") if p[1] > 0]) >= 2'
lk replicate >/dev/null
wait_for "operations under version 2" 120 'ops() >= 200'
lk backup run >/dev/null
wait_for "the zone's lag again" 120 'len([p for p in lag_samples("offsite") if p[1] > 0]) >= 3'
lk replicate >/dev/null
lk backup run >/dev/null
lk replicate >/dev/null           # in sync
lk backup verify >/dev/null
wait_for "the zone in sync on the chart" 60 'lag_samples("offsite") and lag_samples("offsite")[-1][1] == 0'
# a larger file in one user's directory, so the backup shown running lasts a few seconds
user_dir=$(find "$tmp/data" -mindepth 1 -maxdepth 1 -type d -not -name ".*" | sort | head -n 1)
head -c 64M /dev/urandom > "$user_dir/scans-2024.bin"

args=(--out screenshots --pending top_k=80 --pending chunk_top_k=40 --pending enable_llm_cache=false
      --backup-running --also 80x24:overview)
if [ "${1:-}" = "--record" ]; then
  args+=(--record tests/tui/recorded/demo.json)
  mkdir -p tests/tui/recorded
fi
"$PY" -m lightkeeper.tui.shots "${args[@]}"
lk demo --stop >/dev/null
