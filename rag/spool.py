"""The spool writer: one JSON line per LightRAG operation, appended for the agent to ingest.

Format (docs/architecture.md, "Spool format"): files named
``ops-<host>-<pid>-<start>-<seq:06d>.jsonl`` in ``paths.spool_dir`` (``<start>``: the process's
start time in whole epoch seconds, as psutil reports it), one per process at a time,
rotated when a file passes ``rag.spool_max_bytes``. Each record is written with a single
``os.write`` of the whole ``\\n``-terminated line on an ``O_APPEND`` descriptor, so a reader
never sees two records interleaved and at most the last line can be incomplete (a crash).

The writer never opens DuckDB and never talks to the agent: if the spool directory cannot be
written, the record is dropped with one logged warning (the operation itself succeeds).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from lightkeeper.logs import get_logger

log = get_logger("rag.spool")

# The operations and query modes a record may name. The agent accepts these only (others go to
# quarantine): ``op`` and ``mode`` become Prometheus label values, which must stay bounded.
OPS = ("insert", "query", "delete", "graph")
QUERY_MODES = ("naive", "local", "global", "hybrid", "mix", "bypass")
OUTCOMES = ("ok", "error")
# ``lightkeeper serve`` and ``lightkeeper.instrument`` also name: a query through /query/data
# (``<mode>-data``), where a pipeline insert came from, and which graph operation ran.
DATA_QUERY_MODES = tuple(f"{m}-data" for m in QUERY_MODES)
INSERT_MODES = ("upload", "text", "scan", "pipeline")
GRAPH_MODES = ("read", "edit_entity", "edit_relation", "create_entity", "create_relation",
               "merge_entities", "delete_entity", "delete_relation")
MODES = QUERY_MODES + DATA_QUERY_MODES + INSERT_MODES + GRAPH_MODES

REQUIRED_FIELDS = (
    "v", "op_id", "ts", "user", "op", "mode", "duration_s", "llm_s", "llm_calls", "embed_s",
    "embed_calls", "embed_items", "tokens_in", "tokens_out", "result_bytes", "outcome",
    "error_class", "tuning_version", "pid", "run_id",
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def encode_record(record: dict[str, Any]) -> bytes:
    """``record`` as one ``\n``-terminated JSON line (the C encoder: a few µs)."""
    return _dumps(record).encode("utf-8") + b"\n"


def _host() -> str:
    # The agent compares this with its own socket.gethostname() to know whether it can check
    # the writer's pid, so it is the host name as is (host names never contain '/').
    return (socket.gethostname() or "host").replace("/", "_")


def _process_start() -> int:
    """This process's start time (with the pid, identifies the writer across pid reuse)."""
    try:

        return int(psutil.Process(os.getpid()).create_time())
    except (psutil.Error, OSError):
        return int(time.time())


class SpoolWriter:
    """Appends operation records to this process's current spool file."""
    def __init__(self, spool_dir: Path | str, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.dir = Path(spool_dir)
        self.max_bytes = int(max_bytes)
        self._prefix = f"ops-{_host()}-{os.getpid()}-{_process_start()}"
        self._seq = 0
        self._fd: int | None = None
        self._size = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._warned = False
        self.written = 0
        self.dropped = 0

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self._prefix}-{self._seq:06d}.jsonl"

    def _open(self) -> int:
        if self._pid != os.getpid():  # forked: a child gets its own files
            self._fd = None
            self._pid = os.getpid()
            self._prefix = f"ops-{_host()}-{self._pid}-{_process_start()}"
            self._seq = 0
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.current_path,
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._seq += 1

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a dict with the spool fields) as one line."""
        line = encode_record(record)
        with self._lock:
            try:
                fd = self._open()
                if os.fstat(fd).st_nlink == 0:  # our file was removed under us: start the next
                    self._rotate()
                    fd = self._open()
                if self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                    fd = self._open()
                os.write(fd, line)
                self._size += len(line)
                self.written += 1
            except OSError as exc:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    log.warning("rag.spool.write_failed", dir=str(self.dir),
                                error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
