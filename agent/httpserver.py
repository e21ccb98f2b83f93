"""The agent's HTTP/1.1 server: its Unix-socket API and its TCP monitoring endpoints.

The protocol is h11's (the sans-I/O HTTP/1.1 library under httpx and uvicorn: request parsing,
framing, keep-alive, ``Expect: 100-continue`` and the errors a malformed request deserves); this
module adds the asyncio streams, a router and the limits. It replaced aiohttp in the agent, whose
package imports its whole client (TLS contexts included) with the server: an agent started in
0.1 s less CPU and held 9 MB less resident without it, and the agent serves nothing aiohttp's
server adds (no websockets, no static files, no sessions).

Limits: a request head is at most 16 KiB (h11's bound), a body at most ``max_body`` bytes (413
beyond it), a request must arrive whole within ``request_timeout`` seconds once it began (a
client trickling bytes is cut off: 408), and an idle kept-alive connection is closed after
``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from lightkeeper.logs import get_logger

log = get_logger("http")

READ_SIZE = 64 * 1024
MAX_HEAD = 16 * 1024  # h11's own bound for a head still arriving


class HTTPError(Exception):
    """An answer other than the handler's: ``status`` with ``message`` (and an error ``code``)."""

    def __init__(self, status: int, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Request:
    method: str
    path: str  # percent-encoded, as sent
    query: dict[str, str]  # each name's first value, as aiohttp's ``request.query.get`` gave
    headers: dict[str, str]  # names in lower case
    body: bytes = b""
    match_info: dict[str, str] = field(default_factory=dict)

    @property
    def can_read_body(self) -> bool:
        return bool(self.body)

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not)."""
        return json.loads(self.body)


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(json.dumps(data, default=str).encode(), status)


Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[int, str, str], Response]


def json_error(status: int, message: str, code: str) -> Response:
    """The API's error document: ``{"error": {"message", "code"}}``."""
    return Response.json({"error": {"message": message, "code": code}}, status)


class Router:
    """``/v1/jobs/{id}``-style routes: a ``{name}`` matches one path segment (percent-decoded)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def add_get(self, pattern: str, handler: Handler) -> None:
        self.add("GET", pattern, handler)

    def add_post(self, pattern: str, handler: Handler) -> None:
        self.add("POST", pattern, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = []
        for m, regex, handler in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if m == method or (m == "GET" and method == "HEAD"):
                return handler, {k: unquote(v) for k, v in found.groupdict().items()}
            allowed.append(m)
        if allowed:
            raise HTTPError(405, f"method {method} not allowed here (use {', '.join(allowed)})",
                            "method_not_allowed")
        raise HTTPError(404, f"no such path {path!r}", "not_found")


class Server:
    """Serves ``router`` on any number of listeners until :meth:`close`."""

    def __init__(self, router: Router, *, max_body: int = 1024 * 1024,
                 error_body: ErrorBody = json_error, request_timeout: float = 30.0,
                 idle_timeout: float = 75.0) -> None:
        self.router = router
        self.max_body = max_body
        self.error_body = error_body
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # those inside a handler
        self._closing = False

    async def listen_unix(self, path: Path) -> None:
        """Listen on a Unix socket that only the owner can open (mode 0600 from the start)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_socket():
            path.unlink()  # stale: the caller holds the agent's lock, so no live agent owns it
        old = os.umask(0o177)  # created owner-only, never world-accessible for an instant
        try:
            server = await asyncio.start_unix_server(self._accept, str(path),
                                                     limit=READ_SIZE)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._servers.append(server)

    async def listen_tcp(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._accept, host or None, port,
                                            reuse_address=True, limit=READ_SIZE)
        self._servers.append(server)

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, close idle connections, give requests in a handler ``grace``
        seconds to answer (and close their connections), then cut what is left."""
        self._closing = True
        for server in self._servers:
            server.close()
        for task in list(self._connections - self._busy):
            task.cancel()
        if self._busy:
            await asyncio.wait(list(self._busy), timeout=grace)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    # -- one connection ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError, TimeoutError):
            pass
        except Exception:  # a bug of ours: say it, and drop only this connection
            log.exception("http.connection_error")
        finally:
            self._connections.discard(task)
            self._busy.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        assert task is not None
        while True:
            try:
                request = await self._read_request(conn, reader, writer)
            except HTTPError as exc:
                await self._send_error(conn, writer, exc)
                return
            if request is None:  # the client closed between requests, or idled out
                return
            self._busy.add(task)
            try:
                response = await self._handle(request)
            finally:
                self._busy.discard(task)
            await self._send(conn, writer, response, head_only=request.method == "HEAD",
                             close=self._closing)
            if self._closing or h11.MUST_CLOSE in (conn.our_state, conn.their_state):
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:  # the client's body was not read to its end
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        deadline: float | None = None  # set once the request began
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HTTPError(exc.error_status_hint, f"bad request: {exc}",
                                "bad_request") from None
            if event is h11.NEED_DATA:
                if head is not None and conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100,
                                                                     headers=[])))
                timeout = (self.idle_timeout if deadline is None
                           else max(0.0, deadline - loop.time()))
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
                except TimeoutError:
                    if deadline is None:
                        return None
                    raise HTTPError(408, "the request did not arrive in time",
                                    "timeout") from None
                if deadline is None and data:
                    deadline = loop.time() + self.request_timeout
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                # h11 bounds a head still arriving; one that came in a single read is
                # measured here
                if len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) \
                        > MAX_HEAD:
                    raise HTTPError(431, f"request head over {MAX_HEAD} bytes", "too_large")
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise HTTPError(413, f"request body over {self.max_body} bytes",
                                    "too_large")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _request(head, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # PAUSED: cannot happen before our answer
                return None

    async def _handle(self, request: Request) -> Response:
        try:
            handler, request.match_info = self.router.resolve(request.method, request.path)
            return await handler(request)
        except HTTPError as exc:
            return self.error_body(exc.status, str(exc), exc.code)
        except Exception as exc:  # a handler's bug: a 500 that names it, and the log
            log.exception("http.handler_error", path=request.path)
            return self.error_body(500, f"internal error: {type(exc).__name__}", "internal")

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                    response: Response, head_only: bool, close: bool = False) -> None:
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body)))]
        if close:
            headers.append(("Connection", "close"))
        out = conn.send(h11.Response(status_code=response.status, headers=headers))
        if response.body and not head_only:
            out += conn.send(h11.Data(data=response.body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()


    async def _send_error(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                          exc: HTTPError) -> None:
        """Answer a request that could not be read, then close."""
        response = self.error_body(exc.status, str(exc), exc.code)
        try:
            await self._send(conn, writer, response, head_only=False, close=True)
        except h11.LocalProtocolError:  # h11 has no request to answer (a head cut off)
            writer.write(_raw(response))
            await writer.drain()


def _raw(response: Response) -> bytes:
    """A whole answer that closes the connection, written without h11."""
    head = (f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + response.body


def _request(head: h11.Request, body: bytes) -> Request:
    target = head.target.decode("latin-1")
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1")
               for name, value in head.headers}
    # routed as sent: a %2F inside a segment stays inside it (Router.resolve decodes segments)
    return Request(head.method.decode("ascii"), parts.path or "/", query, headers, body)
