"""Processes: the agent itself (label ``agent``) and the LightRAG processes it is told to watch.

LightRAG processes are found by pid file (``collect.process_pidfiles``) or by a substring of
their command line (``collect.process_patterns``), in one ``psutil.process_iter(attrs=...)``
pass every ``discover_interval`` seconds; between passes the known processes are sampled
directly. Labels are ``<name>-<pid>``, at most MAX_PROCESSES processes in all (the agent
included), so the label set stays bounded. Per process: resident memory, CPU (seconds of CPU
per second of wall time: 1.0 is one full core), threads and open file descriptors.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable

import psutil

from lightkeeper.collectors.base import Triple
from lightkeeper.ids import UnsafePath, read_regular
from lightkeeper.logs import get_logger

log = get_logger("collectors.processes")

MAX_PROCESSES = 50
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _label(name: str, pid: int) -> str:
    clean = _UNSAFE.sub("_", name or "proc")[:32] or "proc"
    return f"{clean}-{pid}"


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
                 max_processes: int = MAX_PROCESSES) -> None:
        self.interval = interval
        self.pidfiles = [str(p) for p in pidfiles]
        self.patterns = [p for p in patterns if p]
        self.discover_interval = max(discover_interval, interval)
        self.max_processes = max_processes
        self._own = psutil.Process()
        self._watched: dict[str, psutil.Process] = {}
        self._prev_cpu: dict[str, tuple[float, float]] = {}
        self._last_discover = -math.inf
        self._capped_logged = False

    def _discover(self) -> dict[str, psutil.Process]:
        own = self._own.pid
        found: dict[int, psutil.Process] = {}
        for pidfile in self.pidfiles:
            pid = _read_pidfile(pidfile)
            if pid is None or pid == own:
                continue
            try:
                found[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
        if self.patterns:
            for proc in psutil.process_iter(attrs=["pid", "cmdline"]):
                if proc.pid == own or proc.pid in found:
                    continue
                cmdline = " ".join(proc.info.get("cmdline") or ())
                if any(p in cmdline for p in self.patterns):
                    found[proc.pid] = proc
        limit = self.max_processes - 1  # the agent takes one
        if len(found) > limit and not self._capped_logged:
            log.warning("processes.too_many_matches", count=len(found), reported=limit,
                        hint="narrow collect.process_patterns")
            self._capped_logged = True
        watched = {"agent": self._own}
        for pid in sorted(found)[:limit]:
            proc = found[pid]
            try:
                name = proc.name()
            except psutil.Error:
                continue
            watched[_label(name, pid)] = proc
        return watched

    def collect(self) -> list[Triple]:
        now = time.monotonic()
        if now - self._last_discover >= self.discover_interval:
            self._watched = self._discover()
            self._last_discover = now
            self._prev_cpu = {k: v for k, v in self._prev_cpu.items() if k in self._watched}
        out: list[Triple] = []
        gone = []
        for label, proc in self._watched.items():
            try:
                if label != "agent" and not proc.is_running():
                    raise psutil.NoSuchProcess(proc.pid)
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    threads = proc.num_threads()
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
            used = cpu.user + cpu.system
            prev = self._prev_cpu.get(label)
            self._prev_cpu[label] = (now, used)
            if prev is not None and now > prev[0] and used >= prev[1]:
                out.append(("process_cpu_usage_ratio", label, (used - prev[1]) / (now - prev[0])))
        for label in gone:
            self._watched.pop(label, None)
            self._prev_cpu.pop(label, None)
        out.append(("process_watched", "", float(len(self._watched))))
        return out

    def close(self) -> None:
        pass
