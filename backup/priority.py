"""Run backup work at low CPU and I/O priority (per thread: Linux applies both per task)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from lightkeeper.logs import get_logger

log = get_logger("backup.priority")

NICE = 10


def lower_current_thread() -> None:
    """Best effort: nice +10 and idle-ish I/O (best-effort class, lowest level)."""
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < NICE:
            os.setpriority(os.PRIO_PROCESS, tid, NICE)
    except OSError as exc:
        log.debug("priority.nice_failed", error=str(exc))

    try:
        psutil.Process(tid).ionice(psutil.IOPRIO_CLASS_BE, 7)
    except (psutil.Error, OSError, ValueError, AttributeError) as exc:
        log.debug("priority.ionice_failed", error=str(exc))


def restore_current_thread(nice: int = 0) -> None:
    """Undo :func:`lower_current_thread` where allowed (root, or an agent worker thread)."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        psutil.Process(tid).ionice(psutil.IOPRIO_CLASS_BE, 4)
    except (psutil.Error, OSError, ValueError, AttributeError):
        pass


@contextmanager
def lowered(enabled: bool = True) -> Iterator[None]:
    """Low priority for the duration of a job, then the thread's previous priority back
    (raising it again needs CAP_SYS_NICE; without it the thread simply stays low)."""
    if not enabled:
        yield
        return
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        before = 0
    lower_current_thread()
    try:
        yield
    finally:
        restore_current_thread(before)
