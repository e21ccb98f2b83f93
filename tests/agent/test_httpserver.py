"""The agent's HTTP/1.1 server (agent/httpserver.py) on a real Unix socket and a real TCP port:
routing, keep-alive, and what it answers to requests that are malformed, too large or too slow."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.agent.httpserver import Request, Response, Router, Server


class Running:
    """A server on its own event loop thread, with a Unix socket and a TCP port."""

    def __init__(self, server: Server, sock: Path) -> None:
        self.server, self.sock = server, sock
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        async def start() -> None:
            await server.listen_unix(sock)
            await server.listen_tcp("127.0.0.1", 0)
            self.port = server._servers[1].sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        assert ready.is_set()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(grace=5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.sock))
        return s


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer off the connection (Content-Length framed)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(rest) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:want]


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


@pytest.fixture
def running() -> Iterator[Running]:
    router = Router()
    seen: list[Request] = []

    async def echo(request: Request) -> Response:
        seen.append(request)
        return Response.json({"path": request.path, "query": request.query,
                              "match": request.match_info, "body": request.body.decode()})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.5)
        return Response.json({"slow": True})

    router.add_get("/v1/jobs/{id}", echo)
    router.add_post("/v1/call/{name}", echo)
    async def boom(request: Request) -> Response:
        raise RuntimeError("a handler's bug")

    router.add_get("/slow", slow)
    router.add_get("/boom", boom)
    short = Path(tempfile.mkdtemp(prefix="lk", dir="/tmp"))
    run = Running(Server(router, max_body=1000, request_timeout=0.5, idle_timeout=30),
                  short / "api.sock")
    run.seen = seen  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        run.close()
        shutil.rmtree(short, ignore_errors=True)


def test_routes_keep_alive_and_decoding(running: Running) -> None:
    assert stat.S_IMODE(running.sock.stat().st_mode) == 0o600
    with running.connect() as s:
        s.sendall(b"GET /v1/jobs/a%2Fb?x=1&x=2&empty= HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_answer(s)
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc["match"] == {"id": "a/b"} and doc["query"] == {"x": "1", "empty": ""}
        # the same connection serves the next request (keep-alive), with a body
        s.sendall(b"POST /v1/call/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
        status, _, body = read_answer(s)
        assert status == 200 and json.loads(body)["body"] == '{"a":1}'
        # a client that asks to close gets its answer, then the close
        s.sendall(b"GET /v1/jobs/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_answer(s)
        assert status == 200 and headers.get("connection") == "close"
        assert closed(s)
    # HEAD: the head of the GET answer, no body
    with running.connect() as s:
        s.sendall(b"HEAD /v1/jobs/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head and rest == b""


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    (b"DELETE /v1/jobs/1 HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (b"POST /v1/call/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
     413, "too_large"),
    (b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n", 500, "internal"),
], ids=["unknown-path", "wrong-method", "body-too-large", "handler-bug"])
def test_refusals_are_the_api_error_document(running: Running, request_bytes: bytes,
                                              status: int, code: str) -> None:
    with running.connect() as s:
        s.sendall(request_bytes)
        got, headers, body = read_answer(s)
    assert got == status, body
    assert json.loads(body)["error"]["code"] == code


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /v1/jobs/1 HTTP/1.1\r\nHost: x\r\n", 408),  # the head never ends
    (b"POST /v1/call/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab", 408),
], ids=["not-http", "negative-length", "head-too-large", "head-never-ends", "body-stalls"])
def test_malformed_or_stalled_requests_get_an_error_and_a_close(
        running: Running, request_bytes: bytes, status: int) -> None:
    with running.connect() as s:
        s.sendall(request_bytes)
        got, headers, _ = read_answer(s)
        assert got == status
        assert headers.get("connection") == "close" and closed(s)
    assert not running.seen  # type: ignore[attr-defined]  # no handler saw any of them


def test_tcp_listener_and_close_lets_a_request_in_a_handler_finish(running: Running) -> None:
    answers: list[Any] = []

    def ask() -> None:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as s:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            answers.append(read_answer(s))

    idle = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    t = threading.Thread(target=ask)
    t.start()
    while not running.server._busy:  # the slow handler runs
        threading.Event().wait(0.01)
    running.close()  # waits for the handler, cuts the idle connection
    t.join(10)
    assert answers and answers[0][0] == 200 and json.loads(answers[0][2]) == {"slow": True}
    assert answers[0][1].get("connection") == "close"  # a stopping server keeps no connection
    assert closed(idle)
    idle.close()
    running.close = lambda: None  # type: ignore[method-assign]  # closed already
