"""Which running ``lightkeeper serve`` processes need a restart for the latest tuning.

``lightkeeper serve`` (``rag/serve.py``) writes ``<state_dir>/serve/<user>.json``: its pid,
URL and the tuning version its LightRAG instance was built with. It applies a new active
version's ``next_operation`` and ``new_documents`` parameters by itself, at its next query or
document; a ``restart`` parameter applies only when the instance is rebuilt, which
``lightkeeper serve --restart --user U`` does in place (requests in flight finish). A
``rebuild`` parameter (the embedding model and dimension) is not applied by the server at
all: its embedding comes from its own arguments and environment.

So what a server still needs is known from the version it was built with and the latest
one, without waiting for the server to notice the change: every parameter whose effective
value for its user differs between the two and whose effect class is not live.

The status files are written by another process: each is opened without following
symlinks, must be a regular file under :data:`MAX_STATUS_BYTES`, and is validated field by
field. A missing, unreadable or malformed file, or a process that cannot be inspected, is
reported as ``unknown`` with the reason, never an exception.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkeeper.contracts.tuning import ServeServer
from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.tuning.params import LIVE_EFFECTS, NAMES, effect_of

MAX_STATUS_BYTES = 64 * 1024
MAX_FILES = 1000
STATUS_DIR = "serve"

# (version, user) -> that version's effective parameters for user; None: version unknown
EffectiveOf = Callable[[int, str], dict[str, Any] | None]


class StatusUnreadable(ValueError):
    """A status file that cannot be trusted; the message says why."""


@dataclass
class ServeStatus:
    """What a ``lightkeeper serve`` process says about itself (validated)."""

    user: str
    pid: int
    url: str = ""
    built_version: int | None = None
    live_version: int | None = None
    reported: list[str] = field(default_factory=list)  # what the server itself reported
    restarts: int = 0


def status_dir(state_dir: Path) -> Path:
    return Path(state_dir) / STATUS_DIR


def restart_command(user: str) -> str:
    return f"lightkeeper serve --restart --user {user}"


def _read_capped(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StatusUnreadable("the status file is gone (the server stopped)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StatusUnreadable("the status file is a symlink; not followed") from None
        raise StatusUnreadable(f"cannot open the status file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StatusUnreadable("the status file is not a regular file")
        if st.st_size > MAX_STATUS_BYTES:
            raise StatusUnreadable(f"the status file is {st.st_size} bytes (more than "
                                   f"{MAX_STATUS_BYTES})")
        data = os.read(fd, MAX_STATUS_BYTES + 1)
        if len(data) > MAX_STATUS_BYTES:
            raise StatusUnreadable(f"the status file grew past {MAX_STATUS_BYTES} bytes")
        return data
    except OSError as exc:
        raise StatusUnreadable(f"cannot read the status file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _version(doc: dict[str, Any], key: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise StatusUnreadable(f"{key} is {v!r}, not a version number")
    return v


def parse_status(data: bytes, user: str) -> ServeStatus:
    """Validate a status file's content; ``user`` is the one its name says."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StatusUnreadable("the status file is not JSON (caught mid-write, or "
                               "corrupt)") from None
    if not isinstance(doc, dict):
        raise StatusUnreadable("the status file does not hold a JSON object")
    pid = doc.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        raise StatusUnreadable(f"pid is {pid!r}, not a process id")
    if doc.get("user") != user:
        raise StatusUnreadable(f"the file is named for {user} but says user "
                               f"{str(doc.get('user'))[:40]!r}")
    url = doc.get("url", "")
    if not isinstance(url, str) or len(url) > 300 or \
            (url and not url.startswith(("http://", "https://"))):
        raise StatusUnreadable("url is not an http(s) address")
    reported = doc.get("restart_needed") or []
    if not isinstance(reported, list) or not all(isinstance(x, str) and x in NAMES
                                                  for x in reported):
        raise StatusUnreadable("restart_needed is not a list of parameter names")
    restarts = doc.get("restarts", 0)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        restarts = 0
    return ServeStatus(user=user, pid=pid, url=url, built_version=_version(doc, "tuning_version"),
                       live_version=_version(doc, "live_tuning_version"),
                       reported=sorted(set(reported)), restarts=restarts)


def read_status(path: Path) -> ServeStatus:
    """One status file, safely (see the module docstring). Raises :class:`StatusUnreadable`."""
    name = Path(path).name
    if not name.endswith(".json"):
        raise StatusUnreadable(f"{name} is not a status file name")
    try:
        user = validate_user_id(name[:-len(".json")])
    except InvalidUserId as exc:
        raise StatusUnreadable(str(exc)) from None
    return parse_status(_read_capped(Path(path)), user)


def process_state(pid: int) -> tuple[str, str]:
    """("running" | "not_running" | "unknown", reason) for a status file's pid."""
    import psutil  # noqa: PLC0415  only when servers are looked at

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "not_running", f"pid {pid} has exited (stale status file)"
        cmd = proc.cmdline()
    except psutil.NoSuchProcess:
        return "not_running", f"pid {pid} is gone (stale status file)"
    except psutil.AccessDenied:
        return "unknown", f"pid {pid} cannot be inspected (another account's process)"
    if "serve" not in cmd:
        return "not_running", f"pid {pid} is now another program (stale status file)"
    return "running", ""


def needs(built: dict[str, Any] | None, latest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(restart, not_applied): parameters whose value differs between what an instance was
    built with (``None``: built without tuning, so none of it was applied) and ``latest``,
    that apply only at a restart, and those the server never applies (``rebuild``)."""
    base = built or {}
    changed = [k for k, v in latest.items() if built is None or base.get(k) != v]
    restart = sorted(k for k in changed if effect_of(k) not in LIVE_EFFECTS
                     and effect_of(k) != "rebuild")
    never = sorted(k for k in changed if effect_of(k) == "rebuild")
    return restart, never


def _entry(st: ServeStatus, latest_version: int, effective_of: EffectiveOf) -> ServeServer:
    state, reason = process_state(st.pid)
    out: ServeServer = {"user": st.user, "pid": st.pid, "url": st.url, "state": state,
                        "notice": None, "tuning_version": st.built_version,
                        "live_tuning_version": st.live_version,
                        "latest_version": latest_version, "restarts": st.restarts,
                        "server_reported": st.reported, "restart_needed": [],
                        "not_applied": [], "restart_command": restart_command(st.user)}
    if reason:
        out["reason"] = reason
    if state != "running":
        return out
    latest = effective_of(latest_version, st.user)
    built = None if st.built_version is None else effective_of(st.built_version, st.user)
    if latest is None or (st.built_version is not None and built is None):
        out["state"] = "unknown"
        out["reason"] = (f"tuning version {st.built_version} the server was built with is not "
                         "in this agent's history")
        return out
    restart, never = needs(built, latest)
    out["restart_needed"] = restart
    out["not_applied"] = never
    if st.built_version is None:
        out["built_without_tuning"] = True
    return out


def _unknown_dir(reason: str) -> list[ServeServer]:
    return [{"user": None, "state": "unknown", "reason": reason,
             "notice": f"lightkeeper serve processes: state unknown ({reason})"}]


def scan(state_dir: Path, latest_version: int, effective_of: EffectiveOf) -> list[ServeServer]:
    """Every ``lightkeeper serve`` status file under ``state_dir``, as JSON-ready dicts:
    ``state`` running | not_running | unknown (with ``reason``), and for a running one the
    parameters that need its restart (``restart_needed``) or that it never applies
    (``not_applied``)."""
    d = status_dir(state_dir)
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return _unknown_dir(f"{d}: {exc.strerror or exc}")
    if not stat.S_ISDIR(st.st_mode):
        return _unknown_dir(f"{d} is not a directory (a symlink is not followed)")
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".json") and not n.startswith("."))
    except OSError as exc:
        return _unknown_dir(f"{d}: {exc.strerror or exc}")
    out: list[ServeServer] = []
    for name in names[:MAX_FILES]:
        try:
            status = read_status(d / name)
        except StatusUnreadable as exc:
            if "is gone" in str(exc):
                continue  # the server stopped between the listing and the read
            out.append({"user": name[:-len(".json")][:64], "state": "unknown",
                        "reason": str(exc), "file": str(d / name), "notice": None})
            continue
        out.append(_entry(status, latest_version, effective_of))
    for entry in out:
        entry["notice"] = notice(entry)
    return out


def notice(server: Mapping[str, Any]) -> str | None:
    """The plain sentence for a server that needs something, else None."""
    user = server.get("user") or "?"
    if server.get("state") == "unknown" and server.get("user") is None:
        return f"lightkeeper serve processes: state unknown ({server.get('reason')})"
    if server.get("state") == "unknown":
        return f"lightkeeper serve for {user}: state unknown ({server.get('reason')})"
    if server.get("state") != "running":
        return None
    parts = []
    if server.get("restart_needed"):
        why = " (it started without an active tuning file)" \
            if server.get("built_without_tuning") else ""
        parts.append(f"lightkeeper serve for {user} (pid {server['pid']}) needs a restart for: "
                     f"{', '.join(server['restart_needed'])}{why} — run "
                     f"`{server['restart_command']}` (requests in flight finish)")
    if server.get("not_applied"):
        parts.append(f"lightkeeper serve for {user} (pid {server['pid']}) does not apply "
                     f"{', '.join(server['not_applied'])}: its embedding comes from its own "
                     "arguments (--embedding-model, EMBEDDING_DIM); the stored vectors need "
                     "a rebuild")
    return "\n".join(parts) or None
