"""Write spool files exactly as the spool format in docs/architecture.md describes."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path


def record(i: int, user: str = "u1", op: str = "query", mode: str | None = "mix",
           version: int | None = 1) -> dict:
    return {"v": 1, "op_id": uuid.uuid4().hex, "ts": time.time() - 10 + i * 1e-4, "user": user,
            "op": op, "mode": mode, "duration_s": 0.01 + (i % 50) * 0.002, "llm_s": 0.005,
            "llm_calls": 1, "embed_s": 0.001, "embed_calls": 1, "embed_items": 2,
            "tokens_in": 100, "tokens_out": 20, "result_bytes": 300, "outcome": "ok",
            "error_class": None, "tuning_version": version, "pid": os.getpid(), "run_id": None}


def spool_name(pid: int, start: int, seq: int, host: str | None = None) -> str:
    return f"ops-{host or socket.gethostname()}-{pid}-{start}-{seq:06d}.jsonl"


def write_records(path: Path, records: list[dict]) -> None:
    with open(path, "ab") as fh:
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))


def dead_pid() -> int:
    """A pid that is not running now (so its spool files count as finished)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
            pid -= 1
        except ProcessLookupError:
            return pid
        except PermissionError:
            pid -= 1
