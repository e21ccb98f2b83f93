"""The agent as a service: systemd's notify protocol (READY, WATCHDOG, RELOADING, STOPPING) over
a real datagram socket, and an agent that loses its state directory, lock file or socket
stops with an error instead of running blind."""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest


def _messages(sock: socket.socket, until: str, timeout: float = 40) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in got):
        assert time.monotonic() < deadline, f"no {until!r} from the agent; got {got}"
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return got


def test_notify_ready_watchdog_reload_stopping(start_agent) -> None:
    short = Path(tempfile.mkdtemp(prefix="lkn", dir="/tmp"))
    path = short / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        agent = start_agent({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "12000000"})
        pid = agent.proc.pid
        ready = _messages(sock, "READY=1")
        assert any(f"MAINPID={pid}" in m for m in ready)
        _messages(sock, "WATCHDOG=1")  # the loops run: systemd's watchdog is fed
        agent.proc.send_signal(signal.SIGHUP)
        after = _messages(sock, "READY=1")
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in after)
        agent.stop()
        assert agent.proc.returncode == 0
        _messages(sock, "STOPPING=1", timeout=5)
    finally:
        sock.close()
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.parametrize("lose", ["state_dir", "lock", "socket"])
def test_agent_stops_when_its_footing_goes(start_agent, lose: str) -> None:
    agent = start_agent()
    state = agent.cfg.path("paths.state_dir")
    if lose == "state_dir":
        while state.exists():  # the agent may restore its tuning file in it meanwhile
            shutil.rmtree(state, ignore_errors=True)
    elif lose == "lock":
        (state / "agent.lock").unlink()
    else:
        agent.cfg.path("agent.socket").unlink()
    assert agent.proc.wait(60) == 1  # non-zero: the service manager restarts it cleanly
    out = agent.output()
    assert "lost its footing" in out
    assert {"state_dir": str(state), "lock": "agent.lock",
            "socket": str(agent.cfg.path("agent.socket"))}[lose] in out
    # a new agent starts cleanly where the old one stood
    again = start_agent()
    assert again.client.status()["pid"] != agent.proc.pid
