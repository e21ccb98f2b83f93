"""Processes: the agent itself (label ``agent``) and the LightRAG processes on this server.

Discovery (``collectors/lightrag_procs.py``) runs every ``discover_interval`` seconds in one
``psutil.process_iter`` pass; between passes the known processes are sampled directly. Each
process is labelled ``<kind>:<name>`` by the user or workspace it serves (``serve:alice``,
``server:bob``, ``worker:bob.2``, ``library:demo``, ``open:carol.rsync``), never by its pid: a
restarted server keeps its series and its restarts are counted (``process_restarts``).
Processes listed in pid files (``collect.process_pidfiles``) or matching
``collect.process_patterns`` are watched too, as ``pidfile:<name>`` / ``match:<name>``. At most
MAX_PROCESSES processes in all (the agent and users' processes under the data root first), so
the label set stays bounded.

Per process: resident memory, CPU (seconds of CPU per second: 1.0 is one full core), threads,
open file descriptors, uptime, restarts, and 0/1 gauges: instrumented (writes our spool), gated
(holds the write gate) and ungated writer (writes a user's directory without the gate: the
``ungated_writer`` alert). :meth:`ProcessCollector.snapshot` is the table behind
``lightkeeper processes`` and the console's processes panel.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from lightkeeper import procstart
from lightkeeper.collectors.base import Triple
from lightkeeper.collectors.lightrag_procs import (
    Found,
    clean,
    discover,
    spool_writers,
    writes_spool,
)
from lightkeeper.ids import UnsafePath, read_regular
from lightkeeper.logs import get_logger

log = get_logger("collectors.processes")

MAX_PROCESSES = 50


def _read_pidfile(path: str) -> int | None:
    """A pid file is written by the watched service's account: no symlink, no FIFO (a read
    would block the collector forever), no device, and never more than a line."""
    try:
        text = read_regular(path, 64).decode("ascii", "replace").strip()
    except (OSError, UnsafePath):
        return None
    first = text.split()[0] if text else ""
    return int(first) if first.isdigit() else None


class ProcessCollector:
    name = "processes"

    def __init__(self, interval: float = 5.0, pidfiles: Iterable[str] = (),
                 patterns: Iterable[str] = (), discover_interval: float = 15.0,
                 max_processes: int = MAX_PROCESSES, data_root: Path | None = None,
                 spool_dir: Path | None = None) -> None:
        self.interval = interval
        self.pidfiles = [str(p) for p in pidfiles]
        self.patterns = [p for p in patterns if p]
        self.discover_interval = max(discover_interval, interval)
        self.max_processes = max_processes
        self.data_root = Path(data_root) if data_root is not None else None
        # where discovery and the refresh between passes look for spool files
        self.spool_dir = Path(spool_dir) if spool_dir is not None else self.data_root
        self._own = psutil.Process()
        self._watched: dict[str, Found] = {}
        self._prev_cpu: dict[str, tuple[float, float]] = {}
        self._identity: dict[str, tuple[int, int]] = {}   # label -> (pid, start ticks)
        self._restarts: dict[str, int] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._last_discover = -math.inf
        self._capped_logged = False

    # -- discovery --------------------------------------------------------------------------
    def _extra(self, found: dict[int, Found]) -> list[Found]:
        """Processes named by pid file or command-line pattern that discovery did not find."""
        out = []
        pids: dict[int, str] = {}
        for pidfile in self.pidfiles:
            pid = _read_pidfile(pidfile)
            if pid is not None:
                pids[pid] = "pidfile"
        if self.patterns:
            for proc in psutil.process_iter(attrs=["pid", "cmdline"]):
                cmdline = " ".join(proc.info.get("cmdline") or ())
                if any(p in cmdline for p in self.patterns):
                    pids.setdefault(proc.info["pid"], "match")
        for pid, kind in pids.items():
            if pid == self._own.pid or pid in found:
                continue
            try:
                proc = psutil.Process(pid)
                out.append(Found(pid, proc.create_time(), kind, clean(proc.name()), proc,
                                 cmd=" ".join(proc.cmdline())[:300]))
            except psutil.Error:
                continue
        return out

    def _discover(self) -> dict[str, Found]:
        found: dict[int, Found] = {}
        if self.data_root is not None:
            for f in discover(self.data_root, self.spool_dir or self.data_root, self._own.pid):
                found[f.pid] = f
        items = list(found.values()) + self._extra(found)
        # users' processes under the data root first, then the rest, oldest first
        items.sort(key=lambda f: (f.user is None and not f.users_open, f.create_time, f.pid))
        limit = self.max_processes - 1  # the agent takes one
        if len(items) > limit and not self._capped_logged:
            log.warning("processes.too_many", count=len(items), reported=limit)
            self._capped_logged = True
        watched: dict[str, Found] = {}
        for f in items[:limit]:
            base = f"{f.kind}:{f.name}"
            label = base
            if f.kind == "worker":
                n = 1
                while f"{base}.{n}" in watched:
                    n += 1
                label = f"{base}.{n}"
            n = 2
            while label in watched:
                label = f"{base}#{n}"
                n += 1
            watched[label] = f
        for label, f in watched.items():
            # by the start in clock ticks, not the wall-clock create time: a clock step moves
            # the latter for every process, which counted a restart of each (procstart)
            ticks = procstart.start_ticks(f.pid)
            if ticks is None:
                continue  # ended since the pass listed it: the next sample drops it
            ident = (f.pid, ticks)
            old = self._identity.get(label)
            if old is not None and old != ident:
                self._restarts[label] = self._restarts.get(label, 0) + 1
                self._prev_cpu.pop(label, None)
                log.info("processes.restarted", process=label, pid=f.pid, old_pid=old[0])
            self._identity[label] = ident
        return watched

    # -- sampling ---------------------------------------------------------------------------
    def collect(self) -> list[Triple]:
        now = time.monotonic()
        if now - self._last_discover >= self.discover_interval:
            self._watched = self._discover()
            self._last_discover = now
            self._prev_cpu = {k: v for k, v in self._prev_cpu.items()
                              if k in self._watched or k == "agent"}
        else:
            self._refresh_instrumented()
        out: list[Triple] = []
        rows: dict[str, dict[str, Any]] = {}
        gone = []
        targets: list[tuple[str, psutil.Process, Found | None]] = [("agent", self._own, None)]
        targets += [(label, f.proc, f) for label, f in self._watched.items()]
        wall = time.time()
        for label, proc, f in targets:
            try:
                if f is not None and not proc.is_running():
                    raise psutil.NoSuchProcess(proc.pid)
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    threads = proc.num_threads()
                    created = proc.create_time()
                    try:
                        fds: int | None = proc.num_fds()
                    except psutil.AccessDenied:
                        fds = None
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                gone.append(label)
                continue
            except psutil.AccessDenied:
                continue
            out.append(("process_resident_memory_bytes", label, float(rss)))
            out.append(("process_threads", label, float(threads)))
            if fds is not None:
                out.append(("process_open_fds", label, float(fds)))
            uptime = max(0.0, wall - created)
            out.append(("process_uptime_seconds", label, uptime))
            used = cpu.user + cpu.system
            prev = self._prev_cpu.get(label)
            self._prev_cpu[label] = (now, used)
            ratio = None
            if prev is not None and now > prev[0] and used >= prev[1]:
                ratio = (used - prev[1]) / (now - prev[0])
                out.append(("process_cpu_usage_ratio", label, ratio))
            row: dict[str, Any] = {"label": label, "pid": proc.pid, "rss_bytes": rss,
                                   "cpu_ratio": ratio, "threads": threads, "open_fds": fds,
                                   "uptime_s": round(uptime, 1)}
            if f is None:
                row.update(kind="agent", name="agent", instrumented=False, gated=False,
                           writer=False, ungated_writer=False, restarts=0)
            else:
                restarts = self._restarts.get(label, 0)
                out.append(("process_restarts", label, float(restarts)))
                out.append(("process_instrumented", label, float(f.instrumented)))
                out.append(("process_gated", label, float(f.gated)))
                out.append(("process_ungated_writer", label, float(f.ungated_writer)))
                row.update(kind=f.kind, name=f.name, user=f.user, workspace=f.workspace,
                           working_dir=f.working_dir, users_open=sorted(f.users_open),
                           user_files_open_for_write=sorted(f.writes_open),
                           instrumented=f.instrumented, gated=f.gated,
                           gate_evidence=f.gate_evidence or None, writer=f.writer,
                           ungated_writer=f.ungated_writer, restarts=restarts, cmd=f.cmd)
            rows[label] = row
        for label in gone:
            self._watched.pop(label, None)
            self._prev_cpu.pop(label, None)
        out.append(("process_watched", "", float(len(self._watched) + 1)))
        ungated = sum(1 for f in self._watched.values() if f.ungated_writer)
        out.append(("lightrag_ungated_writers", "", float(ungated)))
        with self._lock:
            self._rows = rows
        return out

    def _refresh_instrumented(self) -> None:
        """Between discovery passes, which watched processes write the spool: a process
        creates its spool file with its first record, often after the pass that found it, and
        the processes panel would call it not instrumented until the next pass (15 s). One
        listing of the spool directory."""
        if self.spool_dir is None or not self._watched:
            return
        spooled = spool_writers(str(self.spool_dir))
        for f in self._watched.values():
            f.instrumented = writes_spool(f.pid, f.create_time, spooled)

    def snapshot(self) -> list[dict[str, Any]]:
        """The newest table: one row per watched process (the agent first)."""
        with self._lock:
            return [dict(r) for r in self._rows.values()]

    def close(self) -> None:
        pass
