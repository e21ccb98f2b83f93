"""The agent as a process: lock, socket permissions, endpoints, shutdown, bad environments."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from lightkeeper.agent import memory
from lightkeeper.agent.store.db import Store
from lightkeeper.catalog import METRICS
from lightkeeper.cli.status import render
from tests.conftest import REPO, AgentProcess

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_socket_is_owner_only_and_second_agent_refused(agent: AgentProcess, run_cli) -> None:
    sock = Path(agent.cfg["agent.socket"])
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(agent.cfg["paths.state_dir"]).stat().st_mode) == 0o700
    r = run_cli("agent", check=False, timeout=30)
    assert r.returncode == 1
    assert f"another agent (pid {agent.proc.pid}) already runs" in r.stderr
    r = run_cli("agent", "--detach", check=False, timeout=30)
    assert r.returncode == 1 and "already runs" in r.stderr


def test_status_json_and_collecting(agent: AgentProcess, run_cli) -> None:
    time.sleep(1.5)
    s = json.loads(run_cli("status", "--json").stdout)
    assert s["pid"] == agent.proc.pid and s["uptime_s"] > 0
    names = {c["name"] for c in s["collectors"]}
    assert {"cpu", "memory", "disk", "network"} <= names
    assert all(c["runs"] >= 1 for c in s["collectors"])
    human = run_cli("status").stdout
    assert "COLLECTOR" in human and "ready" in human


def test_status_says_where_the_agent_cpu_went(module_agent: AgentProcess) -> None:
    """Per task, the CPU its worker threads used; together never more than the process used."""
    deadline = time.monotonic() + 60
    while True:
        cpu = module_agent.client.status()["cpu"]
        tasks = cpu["tasks"]
        if {"collector:cpu", "collector:processes", "flush", "api"} <= set(tasks) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"collector:cpu", "collector:processes", "flush", "api"} <= set(tasks), tasks
    assert all(t["runs"] >= 1 and t["cpu_s"] >= 0 for t in tasks.values())
    assert 0 < sum(t["cpu_s"] for t in tasks.values()) <= cpu["process_s"]


def test_status_and_metrics_say_where_the_agent_memory_is(module_agent: AgentProcess) -> None:
    """Measured at start and after each maintenance pass (the first one 5 s after start): the
    agent's RSS as the kernel counts it, split into parts, in status and on /metrics."""
    deadline = time.monotonic() + 30
    while True:
        status = module_agent.client.status()
        mem = status["memory"]
        if mem["ts"] > status["started"] + 4 or time.monotonic() > deadline:
            break  # a maintenance pass measured it, with the agent's loops running
        time.sleep(0.2)
    rss = psutil.Process(module_agent.proc.pid).memory_info().rss
    # the C heap's parts where the C library has mallinfo2 (glibc 2.33+), as here
    parts = {"resident", "anonymous", "file", "store_buffers"} | set(memory.heap())
    assert parts <= set(mem), mem
    assert mem["anonymous"] + mem["file"] <= mem["resident"]
    assert 0.75 * rss <= mem["resident"] <= 1.25 * rss, (mem, rss)  # an idle agent: steady
    assert 0 < mem["store_buffers"] < mem["anonymous"]
    deadline = time.monotonic() + 30
    while True:
        text = http_get(module_agent.http + "/metrics")[1].decode()
        found = {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith('lightkeeper_agent_memory_bytes{part="')}
        if set(found) == parts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(found) == parts, text
    assert 0.75 * rss <= found["resident"] <= 1.25 * rss, (found, rss)
    line = next(ln for ln in render(module_agent.client.status()).splitlines()
                if ln.startswith("memory"))
    assert "resident (anonymous" in line and ("C heap" in line) == bool(memory.heap()), line


def test_http_endpoints_and_promtool(module_agent: AgentProcess) -> None:
    agent = module_agent  # reads only
    host = agent.cfg["http.listen"].rpartition(":")[0]
    assert host == "127.0.0.1"
    time.sleep(1.5)
    code, body = http_get(agent.http + "/metrics")
    assert code == 200
    text = body.decode()
    assert "lightkeeper_memory_available_ratio" in text
    assert 'user="' not in text  # no per-user labels on /metrics
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Every family is generated from its declaration in lightkeeper/catalog.py: its HELP and
    # TYPE are the declared ones (no placeholder text), and nothing undeclared is exposed.
    by_family = {m.prom_name: m for m in METRICS.values()}  # counters: HELP names the _total
    helps = dict(line[len("# HELP "):].split(" ", 1) for line in text.splitlines()
                 if line.startswith("# HELP "))
    types = dict(line[len("# TYPE "):].split(" ", 1) for line in text.splitlines()
                 if line.startswith("# TYPE "))
    assert len(helps) > 20, text
    for family, help_text in helps.items():
        decl = by_family.get(family)
        assert decl is not None, f"{family} on /metrics is not declared in lightkeeper/catalog.py"
        assert help_text == decl.help and types[family] == decl.type, (family, help_text)
    code, body = http_get(agent.http + "/api/v1/resources")
    assert code == 200 and "memory_total_bytes" in json.loads(body)["metrics"]
    assert http_get(agent.http + "/healthz")[0] == 200
    code, body = http_get(agent.http + "/readyz")
    assert code == 200, body


def test_api_rejects_bad_requests(module_agent: AgentProcess) -> None:
    from lightkeeper.client import AgentError

    agent = module_agent  # every request is refused: nothing changes

    with pytest.raises(AgentError, match="unknown call"):
        agent.client.call("no.such.call")
    with pytest.raises(AgentError, match="unknown job kind"):
        agent.client.start_job("no-such-kind")
    with pytest.raises(AgentError, match="invalid window"):
        agent.client.series("cpu_usage_ratio", window="forever")
    with pytest.raises(AgentError, match="must be an integer"):
        agent.client.get("/v1/events", since="x")


def test_sigterm_flushes_and_checkpoints(start_agent) -> None:
    a = start_agent({"LIGHTKEEPER_STORE__FLUSH_INTERVAL": "60",
                     "LIGHTKEEPER_COLLECT__SYSTEM_INTERVAL": "0.5"})
    time.sleep(2.5)
    pending = a.client.status()["store"]["pending"]
    assert pending > 0  # collected, not yet flushed (flush interval is 60 s)
    assert a.stop(signal.SIGTERM) == 0
    store_path = a.cfg.path("store.path")
    assert not Path(str(store_path) + ".wal").exists()  # checkpointed
    s = Store(store_path, read_only=True)
    assert s.execute("SELECT count(*) FROM samples")[0][0] >= pending
    events = [r[0] for r in s.execute("SELECT event FROM events ORDER BY id")]
    assert events[0] == "agent.started" and events[-1] == "agent.stopped"


def run_agent(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", *args, "agent"],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def test_corrupt_store_gives_clear_error_and_is_untouched(lk_env: dict[str, str]) -> None:
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    state.mkdir(parents=True)
    store = state / "metrics.duckdb"
    store.write_bytes(os.urandom(64 * 1024))
    before = store.read_bytes()
    r = run_agent(lk_env)
    assert r.returncode == 1
    assert "metrics.duckdb" in r.stderr and ("corrupt" in r.stderr or "cannot open" in r.stderr)
    assert store.read_bytes() == before


def test_unwritable_state_dir_and_missing_data_root(lk_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run_agent({**lk_env, "LIGHTKEEPER_PATHS__STATE_DIR": str(blocker / "state")})
    assert r.returncode == 1 and "is not writable" in r.stderr and str(blocker) in r.stderr
    r = run_agent({**lk_env, "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp_path / "nope")})
    assert r.returncode == 1
    assert f"data root {tmp_path / 'nope'} does not exist" in r.stderr


def test_invalid_config_exit_2(lk_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[agent]\nsockett = 'x'\n")
    r = run_agent(lk_env, "--config", str(f))
    assert r.returncode == 2 and "did you mean 'agent.socket'" in r.stderr


def test_full_disk_keeps_data_and_recovers(small_disk: Any) -> None:
    """The store's filesystem fills up: the write fails with a clear error, nothing already
    stored is lost, the failed batch is kept and lands once space is back."""
    mnt = small_disk(16)
    store = Store(mnt / "m.duckdb")
    store.add_samples([(1.0 + i, "m", "", float(i)) for i in range(1000)])
    store.flush()
    store.checkpoint()
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    store.add_samples([(5000.0 + i, "m", "", float(i)) for i in range(200_000)])
    from lightkeeper.agent.store.db import StoreError

    with pytest.raises(StoreError, match="cannot write 200000 samples"):
        store.flush()
        store.checkpoint()
    assert store.last_write_error
    filler.unlink()
    if store.pending():
        store.flush()
    assert store.execute("SELECT count(*) FROM samples")[0][0] == 201_000
    store.close()


def test_config_change_is_audited(start_agent, lk_env: dict[str, str]) -> None:
    a = start_agent()
    a.stop()
    b = start_agent({"LIGHTKEEPER_STORE__RETENTION_RAW_HOURS": "24"})
    changed = [e for e in b.client.events(kind="audit") if e["event"] == "config.changed"]
    assert len(changed) == 1
    ctx = changed[0]["context"]
    assert ctx["keys"] == ["store.retention_raw_hours"]
    assert ctx["changes"]["store.retention_raw_hours"] == {
        "old": 48.0, "new": 24.0, "origin": "environment LIGHTKEEPER_STORE__RETENTION_RAW_HOURS"}


def test_job_lifecycle_is_audited(agent: AgentProcess) -> None:
    """job.started / job.failed reach the events table with the job's kind in their context."""
    from lightkeeper.client import AgentError

    try:
        job_id = agent.client.start_job("verify", {})
    except AgentError:
        pytest.skip("verify job not registered")
    agent.client.wait_job(job_id, timeout=60)
    events = {e["event"]: e for e in agent.client.events(kind="audit", limit=500)
              if e["context"].get("job_id") == job_id}
    assert "job.started" in events
    assert events["job.started"]["context"]["kind"] == "verify"
    assert any(name in events for name in ("job.succeeded", "job.failed", "job.problems"))


def test_autostart_keeps_explicit_config(lk_env: dict[str, str], run_cli, tmp_path: Path) -> None:
    """The agent the CLI starts on its own rebuilds the caller's configuration from every
    source: an explicit --config is not dropped for the first file read (the user's own)."""
    user_cfg = Path(lk_env["XDG_CONFIG_HOME"]) / "lightkeeper" / "config.toml"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_text("[alerts.cpu_high]\nfor_seconds = 600\n")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[alerts.disk_free_low]\nwarning = 0.97\n")
    try:
        status = json.loads(run_cli("--config", str(explicit), "--set", "log.level=debug",
                                    "status", "--json").stdout)
        assert status["config"]["files"] == [str(user_cfg), str(explicit)]
        assert status["config"]["explicit_file"] == str(explicit)
        assert "log.level" in status["config"]["command_line_keys"]
    finally:
        run_cli("--config", str(explicit), "agent", "--stop")
