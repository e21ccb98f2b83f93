"""The demo's LightRAG servers: ``lightkeeper offline-llm`` and one ``lightkeeper serve`` per
served demo user, as detached processes on free loopback ports.

Each one is recorded in ``<state_dir>/demo-servers.json`` (pid, this boot's id and the
process's start in clock ticks, URL) so that ``demo --stop`` ends exactly those processes (a
recycled pid is never signalled) and a second ``demo`` run reuses servers that still run. Their
logs go to ``<state_dir>/logs/demo-*.log``; they run in ``<state_dir>/demo`` so no ``.env`` of
the current directory is read by LightRAG's server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lightkeeper import procstart
from lightkeeper.cli.common import EXIT_FAILED, CliContext, CliError

STATE_NAME = "demo-servers.json"
EMBED_DIM = 256  # the offline provider's own: served and library users hold alike vectors
READY_TIMEOUT = 240.0
# LightRAG server settings of the caller's environment that must not leak into the demo's
LEAK = ("WORKSPACE", "WORKING_DIR", "INPUT_DIR", "HOST", "PORT", "LIGHTRAG_API_KEY",
        "AUTH_ACCOUNTS", "TOKEN_SECRET", "SSL", "LLM_BINDING", "EMBEDDING_BINDING")


def _dirs(ctx: CliContext) -> tuple[Path, Path, Path]:
    state = ctx.cfg.path("paths.state_dir")
    return state / STATE_NAME, state / "demo", state / "logs"


def read_state(ctx: CliContext) -> dict[str, Any]:
    path, _, _ = _dirs(ctx)
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_state(ctx: CliContext, doc: dict[str, Any]) -> None:
    path, _, _ = _dirs(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def alive(entry: dict[str, Any] | None, marker: str) -> bool:
    """The recorded process still runs (same pid, boot and start in clock ticks, ``marker`` in
    its argv). The wall-clock start time is compared only in a record of an older version: it
    moves with every clock step (``lightkeeper.procstart``), and a step between ``demo`` and
    ``demo --stop`` left the demo's processes running."""
    import psutil

    if not entry:
        return False
    try:
        pid = int(entry["pid"])
        same = procstart.same_process(pid, entry)
        proc = psutil.Process(pid)
        if same is None:
            same = abs(proc.create_time() - float(entry["create_time"])) < 0.5 \
                and proc.status() != psutil.STATUS_ZOMBIE
        return same and marker in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return False


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAK}
    env.update(extra)
    return env


class DemoServers:
    """Start (or reuse) the offline endpoint and the served users' servers."""

    def __init__(self, ctx: CliContext, users: tuple[str, ...], latency: dict[str, float],
                 cfg_args: list[str]) -> None:
        self.ctx = ctx
        self.users = users
        self.latency = latency
        self.cfg_args = cfg_args
        self.state = read_state(ctx)
        self.started: list[dict[str, Any]] = []  # what this run started (stopped on failure)
        self.pending: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> tuple[
            subprocess.Popen[bytes], Path, Path]:
        _, run_dir, log_dir = _dirs(self.ctx)
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_dir.mkdir(parents=True, exist_ok=True)
        ready = run_dir / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        log = log_dir / f"demo-{name}.log"
        cmd = [sys.executable, "-m", "lightkeeper.cli.main", *self.cfg_args, *args,
               "--ready-file", str(ready)]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=fh, stderr=fh, start_new_session=True,
                                    close_fds=True)
        return proc, ready, log

    def _wait(self, name: str, proc: subprocess.Popen[bytes], ready: Path, log: Path,
              marker: str) -> dict[str, Any]:
        import psutil

        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if ready.exists():
                try:
                    info = json.loads(ready.read_text())
                except ValueError:
                    info = None
                if isinstance(info, dict) and info.get("url"):
                    entry = {"pid": proc.pid, "url": info["url"],
                             "create_time": psutil.Process(proc.pid).create_time(),
                             **procstart.identity(proc.pid), "marker": marker,
                             "log": str(log)}
                    self.started.append(entry)
                    return entry
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        if proc.poll() is None:
            proc.terminate()
        self.stop_started()
        raise CliError(f"the demo's {name} did not start (log {log}):\n{tail}", EXIT_FAILED)

    def start(self) -> None:
        """The endpoint (waited for: the servers need its address), then the servers
        (not waited for: :meth:`ready` does, so the library users seed meanwhile)."""
        llm = self.state.get("llm")
        if not alive(llm, "offline-llm"):
            for entry in (self.state.get("servers") or {}).values():
                _stop_one(entry, "serve")  # they point at an endpoint that is gone
            args = ["offline-llm", "--port", "0", "--embed-dim", str(EMBED_DIM),
                    "--llm-ms", str(self.latency["llm_ms"]),
                    "--llm-ms-per-token", str(self.latency["llm_ms_per_token"]),
                    "--embed-ms", str(self.latency["embed_ms"])]
            proc, ready, log = self._spawn("offline-llm", args, _child_env({}))
            llm = self._wait("offline-llm", proc, ready, log, "offline-llm")
            self.state = {"llm": llm, "servers": {}}
            self._save()
        assert llm is not None
        _, run_dir, _ = _dirs(self.ctx)
        servers = self.state.setdefault("servers", {})
        for user in self.users:
            if alive(servers.get(user), "serve"):
                continue
            servers.pop(user, None)
            env = _child_env({
                "LLM_BINDING": "openai", "LLM_BINDING_HOST": llm["url"], "LLM_MODEL": "offline",
                "LLM_BINDING_API_KEY": "offline", "EMBEDDING_BINDING": "openai",
                "EMBEDDING_BINDING_HOST": llm["url"], "EMBEDDING_MODEL": "offline",
                "EMBEDDING_BINDING_API_KEY": "offline", "EMBEDDING_DIM": str(EMBED_DIM),
                "INPUT_DIR": str(run_dir / f"inputs-{user}"), "LOG_DIR": str(run_dir),
                "TIKTOKEN_CACHE_DIR": str(run_dir / "tiktoken")})
            args = ["serve", "--user", user, "--host", "127.0.0.1", "--port", "0",
                    "--working-dir", str(self.ctx.cfg.path("paths.data_root"))]
            self.pending[user] = self._spawn(f"serve-{user}", args, env)

    def ready(self) -> dict[str, Any]:
        """Wait for the servers started by :meth:`start`; the recorded state."""
        for user, (proc, ready, log) in list(self.pending.items()):
            self.state["servers"][user] = self._wait(f"lightkeeper serve for {user}", proc,
                                                     ready, log, "serve")
            self._save()
            del self.pending[user]
        return self.state

    def _save(self) -> None:
        _write_state(self.ctx, self.state)

    def stop_started(self) -> None:
        for proc, _, _ in self.pending.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in self.pending.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for entry in reversed(self.started):
            _stop_one(entry, entry.get("marker", ""))
        self.pending.clear()


def _stop_one(entry: dict[str, Any], marker: str, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process (if it is still that process), then wait; SIGKILL after
    ``timeout``. True if it was running."""
    import psutil

    if not alive(entry, marker):
        return False
    proc = psutil.Process(int(entry["pid"]))
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return True


def stop(ctx: CliContext) -> list[dict[str, Any]]:
    """Stop the demo's servers (first), then its endpoint; forget them."""
    doc = read_state(ctx)
    out = []
    for user, entry in sorted((doc.get("servers") or {}).items()):
        out.append({"name": f"serve {user}", "pid": entry.get("pid"),
                    "stopped": _stop_one(entry, "serve")})
    llm = doc.get("llm")
    if llm:
        out.append({"name": "offline-llm", "pid": llm.get("pid"),
                    "stopped": _stop_one(llm, "offline-llm")})
    path, _, _ = _dirs(ctx)
    path.unlink(missing_ok=True)
    return out


def status(ctx: CliContext) -> dict[str, Any]:
    doc = read_state(ctx)
    llm = doc.get("llm") or {}
    return {"llm": llm.get("url") if alive(llm, "offline-llm") else None,
            "servers": {u: {"pid": e["pid"], "url": e["url"], "running": alive(e, "serve")}
                        for u, e in sorted((doc.get("servers") or {}).items())}}
