"""The process table discovery reads (``procstart.table``) against real processes: what psutil
reports for the same processes, a command line with spaces and non-ASCII arguments, a process
that rewrote its title, a zombie (left out) and a process that ended (gone from the next read).
Other engineers' processes run on this machine: every assertion looks only at pids these tests
started, or at psutil's view of the same pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from lightkeeper import procstart


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A real process with arguments holding a space, an empty string and non-ASCII text."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                             "with space", "", "ünï"], stdin=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _entry(pid: int) -> procstart.Entry | None:
    return next((e for e in procstart.table() if e.pid == pid), None)


def test_a_process_is_read_as_psutil_reads_it(child: subprocess.Popen[bytes]) -> None:
    for _ in range(100):  # the child has exec'd python once its argv is python's
        entry = _entry(child.pid)
        if entry is not None and entry.argv[1:2] == ["-c"]:
            break
        time.sleep(0.02)
    assert entry is not None
    p = psutil.Process(child.pid)
    assert entry.argv == p.cmdline() == [sys.executable, "-c", "import sys; sys.stdin.read()",
                                         "with space", "", "ünï"]
    assert entry.ppid == os.getpid() == p.ppid()
    assert entry.start_ticks == procstart.start_ticks(child.pid)
    ours = _entry(os.getpid())
    assert ours is not None and ours.argv == psutil.Process().cmdline()


def test_a_rewritten_title_is_split_as_psutil_splits_it() -> None:
    assert procstart.parse_cmdline(b"nginx: worker process\0") == ["nginx:", "worker",
                                                                   "process"]
    assert procstart.parse_cmdline(b"a b\0c\0") == ["a b", "c"]
    assert procstart.parse_cmdline(b"") == []


def test_zombies_and_ended_processes_are_left_out() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):  # exited, not reaped: a zombie
        if psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.02)
    assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
    assert _entry(proc.pid) is None
    proc.wait()
    assert _entry(proc.pid) is None
