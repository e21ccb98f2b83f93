"""Ingestion of LightRAG operation records from the spool into ``rag_ops``, exactly once.

For each spool file the agent keeps ``(file, inode, offset)`` in ``spool_offsets``. A batch's rows,
its quarantined lines and the new offset are committed in one transaction, so an agent killed at
any moment neither loses nor duplicates an operation. A last line without its newline waits for
the writer, unless the writer is gone (then it is quarantined: it can never complete).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from lightkeeper.logs import get_logger

log = get_logger("ingest")

NAME_RE = re.compile(r"^ops-(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<seq>\d{6})\.jsonl$")
REQUIRED = ("ts", "user", "op", "duration_s")
COLUMNS: dict[str, tuple[str, Any]] = {
    # spool field -> (rag_ops column, arrow type)
    "ts": ("ts", pa.float64()),
    "user": ("user_id", pa.string()),
    "op": ("op", pa.string()),
    "mode": ("mode", pa.string()),
    "duration_s": ("duration_s", pa.float64()),
    "llm_s": ("llm_s", pa.float64()),
    "llm_calls": ("llm_calls", pa.int32()),
    "embed_s": ("embed_s", pa.float64()),
    "embed_calls": ("embed_calls", pa.int32()),
    "embed_items": ("embed_items", pa.int32()),
    "tokens_in": ("tokens_in", pa.int64()),
    "tokens_out": ("tokens_out", pa.int64()),
    "result_bytes": ("result_bytes", pa.int64()),
    "outcome": ("outcome", pa.string()),
    "error_class": ("error_class", pa.string()),
    "tuning_version": ("tuning_version", pa.int32()),
    "pid": ("pid", pa.int32()),
    "run_id": ("run_id", pa.string()),
    "op_id": ("op_id", pa.string()),
}
NUMERIC = {k for k, (_, t) in COLUMNS.items() if t != pa.string()}
_FAST_PARSE = pajson.ParseOptions(
    explicit_schema=pa.schema([(k, t) for k, (_, t) in COLUMNS.items()]),
    unexpected_field_behavior="ignore")


def parse_block_fast(block: bytes) -> pa.Table | None:
    """Parse a block of complete lines with Arrow's C++ JSON reader, or return None when any
    line is not a valid record (the caller then parses line by line and quarantines)."""
    try:
        table = pajson.read_json(io.BytesIO(block), parse_options=_FAST_PARSE,
                                 read_options=pajson.ReadOptions(block_size=max(len(block), 1 << 20)))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != block.count(b"\n") - block.count(b"\n\n"):
        return None
    for name in REQUIRED:
        if table.column(name).null_count:
            return None
    if pc.any(pc.less(table.column("duration_s"), 0)).as_py():
        return None
    return table.rename_columns([COLUMNS[n][0] for n in table.column_names])
MAX_BATCH_BYTES = 32 * 1024 * 1024


class BadRecord(ValueError):
    pass


def parse_line(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRecord("not a JSON object")
    missing = [k for k in REQUIRED if doc.get(k) is None]
    if missing:
        raise BadRecord("missing " + ", ".join(missing))
    for k in NUMERIC:
        v = doc.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise BadRecord(f"{k} is not a number: {v!r}")
    for k in ("user", "op", "mode", "outcome", "error_class", "run_id", "op_id"):
        v = doc.get(k)
        if v is not None and not isinstance(v, str):
            raise BadRecord(f"{k} is not a string")
    if doc["duration_s"] < 0:
        raise BadRecord("negative duration_s")
    return doc


@dataclass
class IngestStats:
    rows: int = 0
    quarantined: int = 0
    files_removed: int = 0
    passes: int = 0
    last_pass: float | None = None
    lag_seconds: float = 0.0
    pending_bytes: int = 0
    pending_since: dict[str, float] = field(default_factory=dict)


class SpoolIngester:
    def __init__(self, store: Any, spool_dir: Path, host: str | None = None) -> None:
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.host = host or socket.gethostname()
        self.stats = IngestStats()
        self.on_rows: Callable[[pa.Table], None] | None = None

    def _offsets(self) -> dict[str, tuple[int, int]]:
        rows = self.store.execute("SELECT file, inode, off FROM spool_offsets")
        return {f: (int(i or 0), int(o)) for f, i, o in rows}

    def _finished(self, name: str, names: set[str]) -> bool:
        m = NAME_RE.match(name)
        if not m:
            return False
        prefix = f"ops-{m['host']}-{m['pid']}-{m['start']}-"
        seq = int(m["seq"])
        if any(n.startswith(prefix) and n != name and int(n[len(prefix):len(prefix) + 6]) > seq
               for n in names):
            return True
        if m["host"] != self.host:
            return False  # cannot tell for another host: wait for its next file
        try:
            proc = psutil.Process(int(m["pid"]))
            return abs(proc.create_time() - int(m["start"])) > 2
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return True

    def ingest_once(self, now: float | None = None) -> int:
        """One pass over the spool; returns the number of rows ingested."""
        now = time.time() if now is None else now
        try:
            names = {p.name for p in self.spool_dir.iterdir() if p.name.endswith(".jsonl")}
        except FileNotFoundError:
            names = set()
        offsets = self._offsets()
        total = 0
        pending_bytes = 0
        for name in sorted(names):
            path = self.spool_dir / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            inode, offset = offsets.get(name, (st.st_ino, 0))
            if inode != st.st_ino or offset > st.st_size:
                log.warning("ingest.file_replaced", file=name, old_offset=offset)
                offset = 0
            finished = self._finished(name, names)
            while st.st_size > offset:
                n, offset, waiting = self._ingest_chunk(path, st.st_ino, offset, finished, now)
                total += n
                if waiting:
                    break
            pending = max(st.st_size - offset, 0)
            pending_bytes += pending
            if pending:
                self.stats.pending_since.setdefault(name, now)
            else:
                self.stats.pending_since.pop(name, None)
            if finished and offset >= st.st_size:
                self._remove(path, name)
        for gone in set(self.stats.pending_since) - names:
            self.stats.pending_since.pop(gone, None)
        # forget offsets of files that no longer exist
        stale = set(offsets) - names
        if stale:
            self.store.execute("DELETE FROM spool_offsets WHERE file IN (" +
                               ",".join("?" * len(stale)) + ")", sorted(stale))
        self.stats.passes += 1
        self.stats.last_pass = now
        self.stats.pending_bytes = pending_bytes
        self.stats.lag_seconds = (now - min(self.stats.pending_since.values())
                                  if self.stats.pending_since else 0.0)
        return total

    def _ingest_chunk(self, path: Path, inode: int, offset: int, finished: bool, now: float
                      ) -> tuple[int, int, bool]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(MAX_BATCH_BYTES)
        end = data.rfind(b"\n")
        waiting = False
        complete, tail = (b"", data) if end < 0 else (data[:end + 1], data[end + 1:])
        consumed = len(complete)
        lines = complete.split(b"\n")[:-1]
        if tail:
            if len(data) == MAX_BATCH_BYTES and end < 0:
                lines.append(tail)  # one line longer than a batch: quarantined, never stuck
                consumed += len(tail)
            elif len(data) < MAX_BATCH_BYTES:
                if finished:  # the writer is gone: this partial line can never complete
                    lines.append(tail)
                    consumed += len(tail)
                else:
                    waiting = True
        rows: list[dict[str, Any]] = []
        bad: list[tuple[float, str, int, str, str]] = []
        n_complete = complete.count(b"\n")
        fast = parse_block_fast(complete) if n_complete else None
        slow_lines = lines[n_complete:] if fast is not None else lines
        pos = offset + (len(complete) if fast is not None else 0)
        for raw in slow_lines:
            line_off = pos
            pos += len(raw) + 1
            if not raw.strip():
                continue
            try:
                rows.append(parse_line(raw))
            except BadRecord as exc:
                bad.append((now, path.name, line_off, raw[:4000].decode("utf-8", "replace"),
                            str(exc)))
        new_offset = offset + consumed
        table = fast
        if rows:
            slow = pa.table({col: pa.array([r.get(k) for r in rows], typ)
                             for k, (col, typ) in COLUMNS.items()})
            table = slow if table is None else pa.concat_tables([table.select(slow.column_names),
                                                                 slow])
        with self.store.transaction() as con:
            if table is not None and table.num_rows:
                con.register("_ops", table)
                cols = ", ".join(table.column_names)
                con.execute(f"INSERT INTO rag_ops ({cols}) SELECT {cols} FROM _ops")
                con.unregister("_ops")
            if bad:
                con.executemany("INSERT INTO spool_quarantine VALUES (?, ?, ?, ?, ?)", bad)
            con.execute("INSERT OR REPLACE INTO spool_offsets VALUES (?, ?, ?, ?)",
                        [path.name, inode, new_offset, now])
        n = 0 if table is None else table.num_rows
        if n and self.on_rows is not None:
            self.on_rows(table)
        for _ts, fname, off, _line, err in bad:
            log.error("ingest.quarantined", file=fname, offset=off, error=err)
        self.stats.rows += n
        self.stats.quarantined += len(bad)
        return n, new_offset, waiting

    def _remove(self, path: Path, name: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.store.execute("DELETE FROM spool_offsets WHERE file = ?", [name])
        self.stats.files_removed += 1
        log.debug("ingest.file_done", file=name)


def quarantine(store: Any, limit: int = 100) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT ts, file, off AS offset, line, error FROM spool_quarantine "
                             "ORDER BY ts DESC LIMIT ?", [limit])
