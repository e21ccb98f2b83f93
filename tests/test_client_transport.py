"""The client's own HTTP/1.1 transport over the Unix socket (lightkeeper/client.py), against
a real socket served by a thread: every body framing an HTTP server may use, and clear errors
for what no agent sends (a truncated body, a garbled status line, endless headers)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from lightkeeper.client import AgentClient, AgentError, AgentUnavailable


def _serve(path: Path, answer: bytes) -> tuple[threading.Thread, list[bytes]]:
    """Accept one connection, read the request, send ``answer`` raw, close."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    seen: list[bytes] = []

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            req = b""
            while b"\r\n\r\n" not in req:
                req += conn.recv(65536)
            head, _, body = req.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    want = int(line.split(b":")[1])
                    while len(body) < want:
                        body += conn.recv(65536)
            seen.append(head + b"\r\n\r\n" + body)
            conn.sendall(answer)
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, seen


@pytest.mark.parametrize("answer", [
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n'
    b'{"result": [1, 2]}\n',
    b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
    b'a\r\n{"result":\r\n7;ext=1\r\n [1, 2]\r\n1\r\n}\r\n0\r\n\r\n',
    b'HTTP/1.0 200 OK\r\n\r\n{"result": [1, 2]}',  # ended by the close
], ids=["content-length", "chunked", "until-close"])
def test_every_body_framing_is_read_whole(tmp_path: Path, answer: bytes) -> None:
    t, seen = _serve(tmp_path / "s", answer)
    assert AgentClient(tmp_path / "s", timeout=5).call("x.y", big="é" * 70_000) == [1, 2]
    t.join(5)
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/call/x.y HTTP/1.1\r\n")
    assert b"Connection: close" in head and len(body) == 420_023  # all of it sent


@pytest.mark.parametrize("answer, message", [
    (b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"result": 1}', "mid-answer"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "invalid answer from agent"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 << 10), "headers too long"),
    (b"", "without an answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunked body"),
    (b'HTTP/1.1 409 Conflict\r\nContent-Length: 47\r\n\r\n'
     b'{"error": {"message": "busy", "code": "locked"}', "busy"),
])
def test_what_no_agent_sends_is_a_clear_error(tmp_path: Path, answer: bytes,
                                              message: str) -> None:
    t, _ = _serve(tmp_path / "s", answer)
    with pytest.raises((AgentError, ConnectionError)) as err:
        AgentClient(tmp_path / "s", timeout=5).get("/v1/status")
    t.join(5)
    assert message in str(err.value)


def test_no_socket_and_a_silent_one_are_agent_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailable, match="no agent answers"):
        AgentClient(tmp_path / "none", timeout=1).status()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp_path / "mute"))
    srv.listen(1)
    try:
        with pytest.raises(AgentUnavailable, match="did not answer in time"):
            AgentClient(tmp_path / "mute", timeout=0.3).status()
    finally:
        srv.close()
