"""Process discovery against real processes: a stock LightRAG server (LightRAG 1.5.7's own
application, offline through ``lightkeeper offline-llm``), a process writing a user's file, and a
gated writer. Named by workspace, not pid; a restarted server keeps its label and counts a
restart. Other engineers' processes run on this machine: every assertion looks only at the pids
these tests started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.collectors.lightrag_procs import classify, data_dir, discover
from lightkeeper.collectors.processes import ProcessCollector
from tests.conftest import REPO, free_port
from tests.rag.servers import Server, stock_env, wait_http

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def test_classify_and_data_dir() -> None:
    assert classify(["/usr/bin/python3", "/venv/bin/lightrag-server", "--port", "9621"]) \
        == ("server", None)
    assert classify(["python", "-m", "lightrag.api.lightrag_server"]) == ("server", None)
    assert classify(["python", "-m", "lightkeeper.cli.main", "serve", "--workspace", "a"]) \
        == ("serve", None)
    assert classify(["/v/bin/lightkeeper", "--config", "c.toml", "demo"]) == ("library", "demo")
    assert classify(["pip", "install", "lightrag-hku"]) is None  # the old substring matched it
    assert classify(["python", "-c", "import lightrag"]) is None
    assert data_dir(["lightrag-server", "--working-dir", "/d", "--workspace", "al"], {}, "/x") \
        == ("/d/al", "al")
    assert data_dir(["lightrag-server"], {"WORKING_DIR": "/d", "WORKSPACE": "bo"}, "/x") \
        == ("/d/bo", "bo")
    assert data_dir(["lightrag-server", "--working-dir=rel"], {}, "/x") == ("/x/rel", None)
    assert data_dir(["lightrag-server"], {}, "/srv") == ("/srv/rag_storage", None)


@pytest.fixture
def offline_llm(tmp_path: Path, child_env: dict[str, str]) -> Iterator[Server]:
    srv = Server(["offline-llm", "--port", "0", "--embed-dim", "64", "--llm-ms", "0"],
                 child_env, tmp_path / "offline-llm.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update({"LIGHTKEEPER_PATHS__STATE_DIR": str(state),
                "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp_path / "data"),
                "LIGHTKEEPER_PATHS__SPOOL_DIR": str(state / "spool"),
                "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")})
    return env


def start_stock(offline_llm: Server, data: Path, workspace: str, tmp: Path
                ) -> subprocess.Popen[bytes]:
    port = free_port()
    env = stock_env(offline_llm.env, offline_llm.url, data, workspace, port, dim=64)
    log = open(tmp / f"stock-{workspace}-{port}.log", "wb")  # noqa: SIM115  child owns it
    proc = subprocess.Popen([sys.executable, "-m", "lightkeeper.rag.stock_server"], cwd=tmp,
                            env=env, stdout=log, stderr=log)
    log.close()
    wait_http(f"http://127.0.0.1:{port}/health", proc)
    return proc


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _rows(c: ProcessCollector, pids: set[int]) -> dict[str, dict[str, Any]]:
    c.collect()
    return {r["label"]: r for r in c.snapshot() if r["pid"] in pids}


HOLD_OPEN = """
import sys, time
f = open(sys.argv[1], "a")
print("READY", flush=True)
time.sleep(120)
"""

HOLD_GATE = """
import sys, time
from pathlib import Path
from lightkeeper.gate import write_gate
with write_gate(Path(sys.argv[1])):
    print("READY", flush=True)
    time.sleep(120)
"""


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == "READY"
    return p


def test_stock_server_named_by_workspace_restart_keeps_its_series(
        offline_llm: Server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ws = "ws" + uuid.uuid4().hex[:8]
    (data / ws).mkdir(parents=True)
    spool = tmp_path / "state" / "spool"
    c = ProcessCollector(interval=1, discover_interval=0, data_root=data, spool_dir=spool)
    first = start_stock(offline_llm, data, ws, tmp_path)
    procs = [first]
    try:
        rows = _rows(c, {first.pid})
        label = f"server:{ws}"
        assert set(rows) == {label}, rows
        r = rows[label]
        assert r["user"] == ws and r["working_dir"] == str(data / ws) and r["kind"] == "server"
        assert r["gated"] is False and r["instrumented"] is False
        assert r["writer"] and r["ungated_writer"] and r["restarts"] == 0
        assert r["rss_bytes"] > 10 << 20
        metrics = {(m, lab): v for m, lab, v in c.collect()}
        assert metrics[("process_ungated_writer", label)] == 1.0
        assert metrics[("process_restarts", label)] == 0.0
        assert ("lightrag_ungated_writers", "") in metrics
        assert not [lab for (m, lab) in metrics if lab.endswith(str(first.pid))]

        _stop(first)
        assert label not in _rows(c, {first.pid})
        second = start_stock(offline_llm, data, ws, tmp_path)
        procs.append(second)
        rows = _rows(c, {second.pid})
        assert set(rows) == {label}, rows           # the same series, a new pid
        assert rows[label]["restarts"] == 1 and rows[label]["pid"] == second.pid
        metrics = {(m, lab): v for m, lab, v in c.collect()}
        assert metrics[("process_restarts", label)] == 1.0
    finally:
        for p in procs:
            _stop(p)


def test_open_file_writers_and_gate_holders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for u in ("carol", "dave"):
        (data / u).mkdir(parents=True)
    (data / "carol" / "kv_store_full_docs.json").write_text("{}")
    writer = _child(HOLD_OPEN, str(data / "carol" / "kv_store_full_docs.json"))
    holder = _child(HOLD_GATE, str(data / "dave"))
    try:
        found = {f.pid: f for f in discover(data, tmp_path / "spool")
                 if f.pid in (writer.pid, holder.pid)}
        w, h = found[writer.pid], found[holder.pid]
        assert w.kind == "open" and w.user == "carol" and w.writes_open == {"carol"}
        assert w.name.startswith("carol.") and w.ungated_writer and not w.gated
        assert h.kind == "open" and h.users_open == {"dave"} and h.gated
        assert h.gate_evidence == "holds the gate lock" and not h.ungated_writer
    finally:
        for p in (writer, holder):
            p.kill()
            p.wait()


def test_processes_cli_names_the_server_by_workspace(offline_llm: Server, tmp_path: Path,
                                                     child_env: dict[str, str]) -> None:
    """Through the agent: ``lightkeeper processes --json`` (and --check's exit code)."""
    from tests.conftest import AgentProcess

    data = tmp_path / "data"
    ws = "ws" + uuid.uuid4().hex[:8]
    (data / ws).mkdir(parents=True)
    env = {k: v for k, v in child_env.items() if k.startswith(("LIGHTKEEPER_", "XDG_"))}
    env.update(LIGHTKEEPER_HTTP__LISTEN=f"127.0.0.1:{free_port()}",
               LIGHTKEEPER_COLLECT__SYSTEM_INTERVAL="1")
    server = start_stock(offline_llm, data, ws, tmp_path)
    agent = AgentProcess(env).start()
    try:
        deadline = time.monotonic() + 60
        mine: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not mine:
            time.sleep(0.5)
            r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "processes",
                                "--json"], cwd=REPO, env={**os.environ, **env},
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            mine = [p for p in json.loads(r.stdout)["processes"] if p["pid"] == server.pid]
        assert mine and mine[0]["label"] == f"server:{ws}", mine
        assert mine[0]["ungated_writer"] is True
        r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "processes"],
                           cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=60)
        assert f"server:{ws}" in r.stdout and "UNGATED WRITER" in r.stdout
        r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "processes",
                            "--check"], cwd=REPO, env={**os.environ, **env},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 4
    finally:
        agent.stop()
        _stop(server)
