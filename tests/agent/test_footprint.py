"""An idle agent does not load the libraries only jobs need (issue 13, "a small resident").

The SSH client (paramiko, with its native bcrypt and PyNaCl) and the repository code (numpy,
cryptography, zstandard, the chunker, blake3) cost about 30 MB of RSS. The agent imports the
backup and zone call modules at start, so those must import them only inside the jobs and calls
that reach a repository or a zone. The check reads the real agent's /proc/PID/maps: every one of
these libraries maps a shared object of its own once imported (paramiko and boto3 are pure
Python, so their native dependencies stand for them), and nothing in the agent is asked to report
on itself.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.client import AgentError

# Package directories whose shared objects appear in /proc/PID/maps once the package is imported.
HEAVY = ("nacl", "bcrypt", "cryptography", "numpy", "zstandard", "pyfastcdc", "blake3",
         "paramiko", "boto3", "botocore", "pandas", "pyarrow", "lightrag")


def loaded_heavy(pid: int) -> set[str]:
    found: set[str] = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "site-packages" not in parts[5]:
            continue
        rel = parts[5].split("site-packages/", 1)[1]
        top = rel.split("/", 1)[0].split(".", 1)[0]
        if top in HEAVY or top.removeprefix("_") in HEAVY:
            found.add(top)
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_idle_agent_maps_no_ssh_repository_or_rag_libraries(agent: Any) -> None:
    assert agent.proc is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every collector has run once: the loops are going
        cols = agent.client.status().get("collectors", [])
        if cols and all(c.get("last_ok") for c in cols):
            break
        time.sleep(0.2)
    else:
        pytest.fail("collectors did not all run within 60 s: " + agent.output())
    assert loaded_heavy(agent.proc.pid) == set()


def test_the_check_sees_a_loaded_library() -> None:
    """The maps reader finds a library this test process has certainly imported."""
    import numpy  # noqa: F401  loaded here on purpose

    assert "numpy" in loaded_heavy(os.getpid())



# Packages only a job (or nothing at all) may bring into the agent's process; the pure-Python
# ones (lightrag, paramiko) leave no shared object in /proc/PID/maps, so this asks the agent.
JOB_ONLY = {"lightrag", "pandas", "pyarrow", "numpy", "cryptography", "blake3", "zstandard",
            "paramiko", "boto3", "pyfastcdc",
            "aiohttp"}  # no job needs it either: the agent serves HTTP on h11


def test_the_agent_reports_the_packages_it_holds(agent: Any) -> None:
    answer = agent.client.call("agent.modules")
    assert {"duckdb", "h11", "lightkeeper"} <= set(answer["packages"])
    assert answer["modules"] > len(answer["packages"])


def test_idle_agent_imports_no_lightrag_pandas_pyarrow_or_repository_code(agent: Any) -> None:
    """Every loop has run a few times (the test intervals are at most 1 s): the collectors, the
    timestamp refresh that asks backup.stats of a data root with no repository yet, the
    schedules, the probes, the alerts. The console's Backups pane asks the same."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = agent.client.status()
        cols = st.get("collectors", [])
        if cols and all(c.get("last_ok") for c in cols) and st["uptime_s"] > 4:
            break
        time.sleep(0.2)
    else:
        pytest.fail("collectors did not all run within 60 s: " + agent.output())
    with pytest.raises(AgentError) as err:
        agent.client.call("backup.stats")
    assert err.value.status == 404 and "no backup repository at" in str(err.value)
    # worded as the repository code words it (the agent no longer imports that code to say it)
    from lightkeeper.backup.repository import Repository, RepositoryError

    path = Path(str(err.value).removeprefix("no backup repository at ").split(" (run ")[0])
    with pytest.raises(RepositoryError) as direct:
        Repository.open(path, path / "no-key")
    assert str(direct.value) == str(err.value)
    loaded = set(agent.client.call("agent.modules")["packages"]) & JOB_ONLY
    assert loaded == set(), f"the idle agent imported {sorted(loaded)}"


def test_agent_without_the_tcp_endpoint_does_not_load_prometheus_client(start_agent) -> None:
    agent = start_agent({"LIGHTKEEPER_HTTP__ENABLED": "false"})
    assert "prometheus_client" not in agent.client.call("agent.modules")["packages"]
    assert agent.client.status()["http"] is None


def test_prometheus_client_loads_with_the_first_scrape(agent: Any) -> None:
    """An agent whose /metrics nobody has scraped has not loaded prometheus_client; the first
    scrape loads it and gets the exposition (so the check above can fail)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    assert agent.client.status()["http"]
    assert "prometheus_client" not in agent.client.call("agent.modules")["packages"]
    with urllib.request.urlopen(agent.http + "/metrics", timeout=10) as r:
        body = r.read().decode()
        assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "# TYPE lightkeeper_agent_start_time_seconds gauge" in body
    assert "prometheus_client" in agent.client.call("agent.modules")["packages"]
