"""Run transfer tasks on several connections at once (SFTP channels or S3 clients, one thread
each), reporting progress and honouring cancellation from the calling thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lightkeeper.progress import JobCancelled

T = TypeVar("T")  # a task
C = TypeVar("C")  # a connection: an SFTP channel or an S3 client


class Counters:
    """Progress counters shared by worker threads; only the caller's thread talks to ctx."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files_done = 0
        self.bytes_done = 0
        self.current = ""

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes_done += n

    def file_done(self, name: str) -> None:
        with self.lock:
            self.files_done += 1
            self.current = name


def run_tasks(clients: list[C], tasks: Iterable[T], fn: Callable[[C, T, threading.Event], Any],
              ctx: Any,
              report: Callable[[], None], interval: float = 0.25) -> None:
    """Apply ``fn(sftp, task, stop)`` to every task, each channel in its own thread. The first
    error stops the others and is raised; cancellation raises JobCancelled."""
    q: queue.SimpleQueue[T] = queue.SimpleQueue()
    n = 0
    for task in tasks:
        q.put(task)
        n += 1
    if n == 0:
        return
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(conn: C) -> None:
        while not stop.is_set():
            try:
                task = q.get_nowait()
            except queue.Empty:
                return
            try:
                fn(conn, task, stop)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if not stop.is_set():
                    errors.append(exc)
                stop.set()
                return

    threads = [threading.Thread(target=worker, args=(c,), daemon=True, name="zone-xfer")
               for c in clients[:n]]
    for thread in threads:
        thread.start()
    cancelled = False
    while True:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(interval)
        if ctx is not None and getattr(ctx, "cancelled", False) and not stop.is_set():
            cancelled = True
            stop.set()
        report()
    for thread in threads:
        thread.join()
    report()
    if cancelled:
        raise JobCancelled(getattr(ctx, "job_id", "job"))
    if errors:
        raise errors[0]
