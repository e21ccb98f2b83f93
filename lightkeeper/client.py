"""Client of the agent's local API (HTTP/JSON over the owner-only Unix socket).

Synchronous on purpose: the CLI calls it directly and the console calls it from worker threads.
It never imports DuckDB or opens data files.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lightkeeper.config import Config


class AgentUnavailable(RuntimeError):
    """No agent answers on the socket (and none could be started)."""


class AgentError(RuntimeError):
    """The agent answered with an error."""

    def __init__(self, message: str, status: int = 500, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


MAX_HEAD = 64 << 10  # status line and headers of one answer


def _exchange(path: str, method: str, target: str, payload: bytes | None,
              timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 request over the Unix socket at ``path``; returns (status, body).

    A small client of its own instead of ``http.client``: that module imports ``ssl`` and the
    ``email`` parser (25 ms of every CLI command's start, measured with ``-X importtime``), and
    the agent's answers need none of it: one request per connection (``Connection: close``),
    a body sized by Content-Length, chunked, or ended by the close."""
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    if payload is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    elif method != "GET":
        head.append("Content-Length: 0")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (payload or b""))
        buf = bytearray()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise AgentError("invalid answer from agent: headers too long", 502)
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("the agent closed the connection without an answer")
            buf += data
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise AgentError(f"invalid answer from agent: {lines[0][:200]!r}", 502)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = bytearray(buf[end + 4:])
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        want = int(length) if length and length.isdigit() and not chunked else -1
        while want < 0 or len(body) < want:
            data = sock.recv(1 << 20)
            if not data:
                break
            body += data
        if want >= 0:
            if len(body) < want:
                raise ConnectionResetError("the agent closed the connection mid-answer")
            del body[want:]
        elif chunked:
            body = _dechunk(body)
        return int(parts[1]), bytes(body)
    finally:
        sock.close()


def _dechunk(raw: bytearray) -> bytearray:
    out = bytearray()
    pos = 0
    while True:
        eol = raw.find(b"\r\n", pos)
        size_text = bytes(raw[pos:eol]).split(b";", 1)[0].strip() if eol >= 0 else b""
        try:
            size = int(size_text, 16)
        except ValueError:
            raise AgentError("invalid answer from agent: bad chunked body", 502) from None
        if size == 0:
            return out
        start = eol + 2
        if start + size > len(raw):
            raise ConnectionResetError("the agent closed the connection mid-answer")
        out += raw[start:start + size]
        pos = start + size + 2


class AgentClient:
    def __init__(self, socket_path: Path | str, timeout: float = 30.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    # -- transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None,
                 timeout: float | None = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        try:
            status, data = _exchange(self.socket_path, method, path, payload,
                                     timeout or self.timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnavailable(
                f"no agent answers on {self.socket_path} ({exc.strerror}); "
                "start one with 'lightkeeper agent --detach'") from None
        except PermissionError:
            raise AgentUnavailable(
                f"permission denied on {self.socket_path}: the agent's socket is owner-only; "
                "run as the user who runs the agent") from None
        except TimeoutError:
            raise AgentUnavailable(f"the agent on {self.socket_path} did not answer in time") \
                from None
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            raise AgentError(f"invalid answer from agent: {data[:200]!r}", status) from None
        if status >= 400:
            err = (doc or {}).get("error", {}) if isinstance(doc, dict) else {}
            raise AgentError(err.get("message", f"HTTP {status}"), status,
                             err.get("code", "error"))
        return doc

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path + (("?" + urlencode(clean)) if clean else ""))

    # -- API -------------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            self._request("GET", "/v1/health", timeout=2)
            return True
        except (AgentUnavailable, AgentError, OSError):
            return False

    def status(self) -> dict[str, Any]:
        return self.get("/v1/status")

    def reload(self, actor: str | None = None) -> dict[str, Any]:
        """Ask the agent to re-read its configuration: ``{ok, changed}`` or ``{ok, error}``."""
        return self._request("POST", "/v1/reload", {"actor": actor or default_actor()})

    def call(self, name: str, **params: Any) -> Any:
        return self._request("POST", f"/v1/call/{name}", {"params": params})["result"]

    def series(self, metric: str, label: str | None = None, window: str | float = "1h",
               step: float | None = None, agg: str = "avg") -> dict[str, Any]:
        return self.get("/v1/series", metric=metric, label=label, window=window, step=step,
                        agg=agg)

    def events(self, since: int = 0, limit: int = 200, level: str | None = None,
               kind: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
        return self.get("/v1/events", since=since, limit=limit, level=level, kind=kind, q=q)

    def alerts(self, active: bool = True, limit: int = 100) -> list[dict[str, Any]]:
        return self.get("/v1/alerts", active=int(active), limit=limit)

    def start_job(self, kind: str, params: dict[str, Any] | None = None,
                  actor: str | None = None) -> str:
        doc = self._request("POST", "/v1/jobs", {"kind": kind, "params": params or {},
                                                 "actor": actor or default_actor()})
        return doc["id"]

    def jobs(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        return self.get("/v1/jobs", limit=limit, active=int(active))

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel", {})

    def wait_job_change(self, job_id: str, since: int = -1, timeout: float = 20.0) \
            -> dict[str, Any]:
        """The job once it changed after ``since`` (its ``version``), or as it is after
        ``timeout`` seconds: the agent answers as soon as something happens (a long poll)."""
        timeout = max(0.0, min(timeout, self.timeout - 2.0, 60.0))
        return self._request("GET", f"/v1/jobs/{job_id}/wait?since={int(since)}"
                             f"&timeout={timeout:g}", timeout=timeout + 5.0)

    def wait_changes(self, since: dict[str, int], epoch: str | None = None,
                     timeout: float = 25.0) -> dict[str, Any]:
        """``changes.wait``: ``{epoch, versions, moved}`` as soon as a topic of ``since`` moves
        (or at once when ``epoch`` names another agent run), else after ``timeout`` s. The
        socket waits ``timeout`` + 5 s, whatever the client's own (short) timeout."""
        timeout = max(0.0, min(timeout, 60.0))
        params: dict[str, Any] = {"since": since, "timeout": timeout}
        if epoch:
            params["epoch"] = epoch
        return self._request("POST", "/v1/call/changes.wait", {"params": params},
                             timeout=timeout + 5.0)["result"]

    def follow_job(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Yield ``{"type": "status"|"log"|"summary", ...}`` until the job ends; each change
        arrives as the agent makes it (long poll), the end within milliseconds."""
        seen_logs = 0
        last_progress = None
        version = -1
        while True:
            job = self.wait_job_change(job_id, version)
            version = int(job.get("version") or version)
            logs = job.get("logs") or []
            for entry in logs[seen_logs:]:
                yield {"type": "log", "job_id": job_id, **entry}
            seen_logs = len(logs)
            if job["state"] not in ("queued", "running"):
                yield {"type": "summary", "job_id": job_id, "job": job}
                return
            progress = job.get("progress")
            if progress != last_progress:
                yield {"type": "status", "job_id": job_id, "kind": job["kind"],
                       "state": job["state"], "progress": progress}
                last_progress = progress

    def wait_job(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        version = -1
        while (left := deadline - time.monotonic()) > 0:
            job = self.wait_job_change(job_id, version, timeout=min(left, 20.0))
            if job["state"] not in ("queued", "running"):
                return job
            version = int(job.get("version") or version)
        raise TimeoutError(f"job {job_id} still running after {timeout} s")


def default_actor() -> str:
    """``name@host`` of the person acting: the sudo caller, else $USER, else the account's
    name from the password database (root in a container has no $USER: "root", not "0")."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or _account_name()
    return f"{user}@{socket.gethostname()}"


def _account_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (containers): the number is all there is
        return str(os.getuid())


def agent_command(cfg: Config, *command: str) -> list[str]:
    """The command line of a lightkeeper child process (``agent``, ``agent --detach``...) that
    rebuilds ``cfg`` from every source: the environment and the default files it inherits, the
    explicit ``--config`` file and every command-line override. The console's auto-start and
    ``lightkeeper agent --detach`` both start the agent through it."""
    return [sys.executable, "-m", "lightkeeper.cli.main", *cfg.source_args(), *command]


def connect(cfg: Config, autostart: bool = True, wait: float = 30.0) -> AgentClient:
    """A client for the agent of ``cfg``; starts one in the background if none answers."""
    client = AgentClient(cfg.path("agent.socket"))
    if client.ping():
        return client
    if not autostart:
        raise AgentUnavailable(
            f"no agent answers on {client.socket_path}; start one with 'lightkeeper agent --detach'")
    result = subprocess.run(agent_command(cfg, "agent", "--detach"), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=wait + 5)
    if result.returncode != 0:
        raise AgentUnavailable("could not start the agent: " +
                               (result.stderr.strip() or f"exit {result.returncode}"))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if client.ping():
            return client
        time.sleep(0.1)
    raise AgentUnavailable(f"the agent was started but does not answer on {client.socket_path}; "
                           f"see {cfg['log.file']}")
