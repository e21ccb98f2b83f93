"""Which process a recorded pid was: its start in clock ticks since boot, and the boot's id.

A pid alone is reused; a pid with ``psutil.Process.create_time()`` looks unique but is not
stable: psutil adds the kernel's boot time (``btime`` in ``/proc/stat``) to the start in
ticks, and the kernel derives ``btime`` from the wall clock, so every clock step (an NTP
correction at boot, a virtual machine resumed, an operator's ``date -s``) moves the
``create_time`` of every running process by the step. A record made before the step then no
longer matches its own live process: a live job's repository lock looked stale (and was
removed), and ``demo --stop`` did not recognise the demo's servers.

The start in ticks (field 22 of ``/proc/<pid>/stat``) never changes for a process, and the
boot id (``/proc/sys/kernel/random/boot_id``) tells whether a record is from this boot: the
pair is the identity to record and compare. Wall-clock start times remain for display.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of start_ticks, per second


@functools.cache
def boot_id() -> str:
    """This boot's id ("" where the kernel does not say)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The start of process ``pid`` in clock ticks since boot; None when no such process runs
    (gone, or a zombie: it exited and holds nothing, its parent has not reaped it yet)."""
    if pid <= 0:
        return None
    fields = _live_stat(str(pid))
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def _live_stat(pid: str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the first is the state, field
    3); None when no such process runs: gone, or a zombie (it exited and holds nothing, its
    parent has not reaped it yet)."""
    try:
        raw = _read(f"/proc/{pid}/stat", 4096)
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and parentheses
    fields = raw[raw.rfind(b")") + 2:].split()
    return fields if fields and fields[0] not in (b"Z", b"X") else None


def _read(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def identity(pid: int) -> dict[str, Any]:
    """What to record about a process to recognise it later: ``boot_id`` and ``start_ticks``
    (None when it does not run)."""
    return {"boot_id": boot_id(), "start_ticks": start_ticks(pid)}


def same_process(pid: int, recorded: Mapping[str, Any]) -> bool | None:
    """Whether ``pid`` is still the process ``recorded`` (:func:`identity`) describes: True or
    False, or None when the record carries no identity (written by an older version: the caller
    decides by what it has)."""
    ticks = recorded.get("start_ticks")
    rec_boot = recorded.get("boot_id")
    if not isinstance(ticks, int) or isinstance(ticks, bool) or not isinstance(rec_boot, str):
        return None
    if rec_boot and boot_id() and rec_boot != boot_id():
        return False  # recorded in an earlier boot: that process is gone
    return start_ticks(pid) == ticks


def open_paths(pid: int) -> Iterator[str]:
    """What each descriptor of process ``pid`` points to (absolute paths, symlinks resolved):
    one readlink per descriptor, nothing opened. Nothing when the process is gone or not ours
    to look at."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return
    for fd in fds:
        try:
            yield os.readlink(f"{base}/{fd}")
        except OSError:
            continue


def has_open(pid: int, path: str) -> bool:
    """Whether process ``pid`` holds the file ``path`` (absolute, symlinks resolved) open."""
    return path in open_paths(pid)


PF_KTHREAD = 0x00200000  # the process flags (field 9 of stat) of a kernel thread


@dataclass(frozen=True)
class Entry:
    """One process of the table (:func:`table`): what discovery needs to tell whether it is a
    LightRAG process, from two reads."""

    pid: int
    ppid: int
    start_ticks: int
    argv: list[str]


def parse_cmdline(raw: bytes) -> list[str]:
    """``/proc/<pid>/cmdline`` as psutil reads it: NUL-separated arguments, or a title a
    process rewrote (setproctitle) separated by spaces."""
    if not raw:
        return []
    sep = b"\0" if raw.endswith(b"\0") else b" "
    if raw.endswith(sep):
        raw = raw[:-1]
    parts = raw.split(sep)
    if sep == b"\0" and len(parts) == 1 and b" " in raw:
        parts = raw.split(b" ")
    return [os.fsdecode(p) for p in parts]


def table() -> Iterator[Entry]:
    """Every user-space process that runs now (kernel threads and zombies left out): its pid,
    parent, start and argv, read from ``/proc/<pid>/stat`` and ``/proc/<pid>/cmdline`` alone.
    psutil's ``process_iter`` with the same attributes took seven times the CPU (its per-process
    objects, checks and a third read), most of a discovery pass (issue 13, a small resident).
    A process that ends during the pass is left out."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        fields = _live_stat(name)
        try:
            if fields is None or int(fields[6]) & PF_KTHREAD:
                continue
            argv = parse_cmdline(_read(f"/proc/{name}/cmdline", 128 * 1024))
            yield Entry(int(name), int(fields[1]), int(fields[19]), argv)
        except (OSError, IndexError, ValueError):
            continue
