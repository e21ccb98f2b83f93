"""Which processes on this server run LightRAG, and on whose data: discovery by what a process
is, not by a substring of its command line.

A process is a LightRAG process when it is

- ``lightkeeper serve`` (the stock server's application under watch: instrumented and gated by
  construction);
- a stock ``lightrag-server`` / ``lightrag-gunicorn`` started by other means, or
  ``python -m lightrag.api.lightrag_server``; its data directory comes from argv
  (``--working-dir``, ``--workspace``) or its environment (``WORKING_DIR``, ``WORKSPACE``; read
  with psutil, tolerating AccessDenied), else LightRAG's defaults (``./rag_storage`` under its
  current directory, no workspace). Forked gunicorn workers are told apart from their master;
- lightkeeper's own library runtime (``lightkeeper rag|demo|bench``: gated by construction);
- any other process with a regular file open inside a user's directory under the data root.

Each is named by the user (or workspace) whose directory it serves, never by its pid, so a
restarted server keeps its series. Evidence of the write gate: holding a ``flock`` on a user's
gate file (``/proc/locks``), having it open, or being the pid in its stamp (the last gated
writer). Evidence of instrumentation: a spool file ``ops-<host>-<pid>-<start>-*.jsonl`` of this
very process.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lightkeeper import procstart
from lightkeeper.gate import GATE_FILES, LOCK_NAME
from lightkeeper.ids import top_dir

SERVER_SCRIPTS = ("lightrag-server", "lightrag-gunicorn")
SERVER_MODULES = ("lightrag.api.lightrag_server", "lightrag.api.run_with_gunicorn",
                  "lightkeeper.rag.stock_server")  # the last: the stock server made offline
LIBRARY_COMMANDS = ("rag", "demo", "bench")
WRITE_MODES = ("w", "a", "r+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


@dataclass
class Found:
    """One LightRAG process, as discovery sees it."""

    pid: int
    create_time: float
    kind: str                      # serve | server | worker | library | open
    name: str                      # the user or workspace (or the library command)
    proc: psutil.Process
    ppid: int = 0
    workspace: str | None = None
    working_dir: str | None = None  # the directory holding its stores
    user: str | None = None         # the user, when that directory is one under the data root
    users_open: set[str] = field(default_factory=set)   # users with a file of theirs open
    writes_open: set[str] = field(default_factory=set)  # ... open for writing
    gated: bool = False
    gate_evidence: str = ""
    gate_files_open: bool = False  # it has a gate file of a user open
    instrumented: bool = False
    cmd: str = ""

    @property
    def writer(self) -> bool:
        return self.kind in ("serve", "server", "worker", "library") or bool(self.writes_open)

    @property
    def ungated_writer(self) -> bool:
        return self.writer and not self.gated and bool(self.user or self.writes_open)


def clean(text: str) -> str:
    return _UNSAFE.sub("_", text)[:48] or "-"


def _arg(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def _subcommand(argv: list[str]) -> str | None:
    """The lightkeeper sub-command of a command line, if it is lightkeeper's."""
    for i, a in enumerate(argv):
        base = os.path.basename(a)
        if base == "lightkeeper" or (a == "lightkeeper.cli.main" and i and argv[i - 1] == "-m"):
            rest = argv[i + 1:]
            j = 0
            while j < len(rest):
                if rest[j] in ("--config", "-c"):
                    j += 2
                    continue
                if rest[j].startswith("-"):
                    j += 1
                    continue
                return rest[j]
            return None
    return None


def _is_stock_server(argv: list[str]) -> bool:
    for i, a in enumerate(argv[:4]):
        if os.path.basename(a) in SERVER_SCRIPTS:
            return True
        if a == "-m" and i + 1 < len(argv) and argv[i + 1] in SERVER_MODULES:
            return True
        if a.endswith("lightrag/api/lightrag_server.py"):
            return True
    return False


def classify(argv: list[str]) -> tuple[str, str | None] | None:
    """(kind, library command) of a command line, or None when it is not a LightRAG one."""
    sub = _subcommand(argv)
    if sub == "serve":
        return "serve", None
    if sub in LIBRARY_COMMANDS:
        return "library", sub
    if _is_stock_server(argv):
        return "server", None
    return None


def data_dir(argv: list[str], env: dict[str, str], cwd: str | None
             ) -> tuple[str | None, str | None]:
    """(working dir holding the stores, workspace) of a LightRAG server's command line."""
    wd = _arg(argv, "--working-dir") or env.get("WORKING_DIR") or "./rag_storage"
    ws = _arg(argv, "--workspace") or env.get("WORKSPACE") or ""
    if not os.path.isabs(wd):
        if cwd is None:
            return None, ws or None
        wd = os.path.join(cwd, wd)
    wd = os.path.normpath(wd)
    return (os.path.join(wd, ws) if ws else wd), (ws or None)


def user_of(path: str | None, data_root: str) -> str | None:
    """The user whose directory ``path`` is (or is inside), under ``data_root``."""
    return top_dir(path, data_root) if path else None


def _open_user_files(pid: int, prefix: str) -> list[str]:
    """Paths under ``prefix`` that ``pid`` has open (one readlink per descriptor)."""
    return [target for target in procstart.open_paths(pid) if target.startswith(prefix)]


def _flock_holders(inodes: dict[int, str]) -> dict[int, set[str]]:
    """pid -> users whose gate file it holds a flock on (``/proc/locks``)."""
    out: dict[int, set[str]] = {}
    if not inodes:
        return out
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if "->" in parts:
            parts.remove("->")  # a waiter: 'N: -> FLOCK ...'
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            pid = int(parts[4])
            ino = int(parts[5].rsplit(":", 1)[1])
        except (ValueError, IndexError):
            continue
        user = inodes.get(ino)
        if user is not None:
            out.setdefault(pid, set()).add(user)
    return out


def _gate_state(data_root: str) -> tuple[dict[int, str], dict[int, tuple[str, int]]]:
    """(gate file inode -> user, stamp pid -> (user, stamp time ns)) under the data root."""
    inodes: dict[int, str] = {}
    stamps: dict[int, tuple[str, int]] = {}
    try:
        entries = list(os.scandir(data_root))
    except OSError:
        return inodes, stamps
    for e in entries:
        if not e.is_dir(follow_symlinks=False):
            continue
        for name in GATE_FILES:
            try:
                st = os.stat(os.path.join(e.path, name), follow_symlinks=False)
            except OSError:
                continue
            inodes[st.st_ino] = e.name
        try:
            fd = os.open(os.path.join(e.path, LOCK_NAME), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            raw = os.read(fd, 64).split()
        finally:
            os.close(fd)
        if len(raw) == 2 and raw[0].isdigit() and raw[1].isdigit():
            stamps[int(raw[0])] = (e.name, int(raw[1]))
    return inodes, stamps


def spool_writers(spool_dir: str) -> dict[tuple[int, int], str]:
    """(pid, start) of every process with a spool file here (from this host), each with the
    path of its latest file: one listing."""
    prefix = f"ops-{socket.gethostname()}-"
    out: dict[tuple[int, int], str] = {}
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return out
    real = os.path.realpath(spool_dir)
    for n in sorted(names):  # the sequence number is fixed-width: the latest file comes last
        if not n.startswith(prefix) or not n.endswith(".jsonl"):
            continue
        parts = n[len(prefix):].split("-")
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            out[(int(parts[0]), int(parts[1]))] = os.path.join(real, n)
    return out


def writes_spool(pid: int, create_time: float, spooled: dict[tuple[int, int], str]) -> bool:
    """Whether the process ``pid`` started at ``create_time`` has a spool file among
    ``spooled`` (:func:`spool_writers`). The start in the file's name tells it from an earlier
    process that had the same pid; when it differs, the process may still be that writer after
    a clock step (which moves every create time, ``lightkeeper.procstart``): then it holds its
    latest file open."""
    for (p, start), path in spooled.items():
        if p == pid and (abs(start - create_time) <= 2 or procstart.has_open(pid, path)):
            return True
    return False


def _gate_evidence(unproven: list[Found], root: str) -> None:
    """Whether the processes not run by lightkeeper use the gate. The gate files of every user
    are read only when such a process runs: with 1,000 users that read is two stats and a read
    per user, more than half of a discovery pass's CPU (issue 13, a small resident)."""
    if not unproven:
        return
    inodes, stamps = _gate_state(root)
    holders = _flock_holders(inodes)
    for f in unproven:
        if f.pid in holders:
            f.gated, f.gate_evidence = True, "holds the gate lock"
        elif f.gate_files_open:
            f.gated, f.gate_evidence = True, "has the gate file open"
        elif f.pid in stamps and stamps[f.pid][1] >= f.create_time * 1e9:
            f.gated, f.gate_evidence = True, "stamped the gate"


def discover(data_root: Path, spool_dir: Path, own_pid: int | None = None) -> list[Found]:
    """One pass over the process table: every LightRAG process, classified and named."""
    root = os.path.realpath(data_root)
    prefix = root.rstrip("/") + "/"
    own = os.getpid() if own_pid is None else own_pid
    spooled = spool_writers(str(spool_dir))
    found: dict[int, Found] = {}
    for entry in procstart.table():
        pid = entry.pid
        if pid == own:
            continue
        argv = entry.argv
        kind_sub = classify(argv)
        opened = _open_user_files(pid, prefix)
        if kind_sub is None and not opened:
            continue
        try:  # psutil for the few processes kept: sampled between passes, their files, env
            proc = psutil.Process(pid)
            ctime = proc.create_time()
            pname = proc.name()
        except psutil.Error:
            continue  # ended since the table was read
        if procstart.start_ticks(pid) != entry.start_ticks:
            continue  # ended, and its pid was taken: the next pass sees the new process
        f = Found(pid, ctime, kind_sub[0] if kind_sub else "open", "", proc,
                  ppid=entry.ppid, cmd=" ".join(argv)[:300])
        for path in opened:
            u = user_of(path, root)
            if u is not None:
                f.users_open.add(u)
        if opened:
            try:
                for of in proc.open_files():
                    u = user_of(of.path, root) if of.path.startswith(prefix) else None
                    if u is not None and getattr(of, "mode", "r") in WRITE_MODES \
                            and os.path.basename(of.path) not in GATE_FILES:
                        f.writes_open.add(u)
            except psutil.Error:
                pass
        if f.kind in ("serve", "server"):
            try:
                env = proc.environ()
            except psutil.Error:  # another user's process: argv only
                env = {}
            try:
                cwd: str | None = proc.cwd()
            except psutil.Error:
                cwd = None
            f.working_dir, f.workspace = data_dir(argv, env, cwd)
            if f.kind == "serve":
                f.workspace = _arg(argv, "--user") or f.workspace
                if _arg(argv, "--user") and not _arg(argv, "--working-dir") \
                        and not env.get("WORKING_DIR"):
                    f.working_dir = os.path.join(root, f.workspace or "")
            f.user = user_of(f.working_dir, root)
            f.name = clean(f.user or f.workspace or os.path.basename(f.working_dir or "")
                           or "default")
        elif f.kind == "library":
            f.name = (kind_sub[1] if kind_sub else None) or "library"
        else:
            users = sorted(f.users_open)
            f.user = users[0] if len(users) == 1 else None
            f.name = clean(f"{'+'.join(users)}.{pname or 'proc'}")
        if f.kind in ("serve", "library"):
            f.gated, f.gate_evidence = True, "lightkeeper runtime"
        else:
            f.gate_files_open = any(os.path.basename(p) in GATE_FILES for p in opened)
        f.instrumented = writes_spool(pid, ctime, spooled)
        found[pid] = f
    _gate_evidence([f for f in found.values() if not f.gated], root)
    # forked gunicorn workers: a server whose parent is the same server
    for f in found.values():
        parent = found.get(f.ppid)
        if f.kind == "server" and parent is not None and parent.kind == "server" \
                and parent.cmd == f.cmd:
            f.kind = "worker"
    return sorted(found.values(), key=lambda f: (f.kind, f.name, f.create_time, f.pid))
