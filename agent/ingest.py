"""Ingestion of LightRAG operation records from the spool into ``rag_ops``, exactly once.

For each spool file the agent keeps ``(file, inode, offset)`` in ``spool_offsets``. A batch's rows,
its quarantined lines and the new offset are committed in one transaction, so an agent killed at
any moment neither loses nor duplicates an operation. A last line without its newline waits for
the writer, unless the writer is gone (then it is quarantined: it can never complete).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psutil

from lightkeeper.agent.histograms import LATENCY_BUCKETS
from lightkeeper.logs import get_logger

log = get_logger("ingest")

NAME_RE = re.compile(r"^ops-(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<seq>\d{6})\.jsonl$")
REQUIRED = ("ts", "user", "op", "duration_s")
COLUMNS: dict[str, tuple[str, str]] = {
    # spool field -> (rag_ops column, SQL type)
    "ts": ("ts", "DOUBLE"),
    "user": ("user_id", "VARCHAR"),
    "op": ("op", "VARCHAR"),
    "mode": ("mode", "VARCHAR"),
    "duration_s": ("duration_s", "DOUBLE"),
    "llm_s": ("llm_s", "DOUBLE"),
    "llm_calls": ("llm_calls", "INTEGER"),
    "embed_s": ("embed_s", "DOUBLE"),
    "embed_calls": ("embed_calls", "INTEGER"),
    "embed_items": ("embed_items", "INTEGER"),
    "tokens_in": ("tokens_in", "BIGINT"),
    "tokens_out": ("tokens_out", "BIGINT"),
    "result_bytes": ("result_bytes", "BIGINT"),
    "outcome": ("outcome", "VARCHAR"),
    "error_class": ("error_class", "VARCHAR"),
    "tuning_version": ("tuning_version", "INTEGER"),
    "pid": ("pid", "INTEGER"),
    "run_id": ("run_id", "VARCHAR"),
    "op_id": ("op_id", "VARCHAR"),
    "queue_wait_s": ("queue_wait_s", "DOUBLE"),
}
NUMERIC = {k for k, (_, t) in COLUMNS.items() if t != "VARCHAR"}
TARGET = ", ".join(col for col, _ in COLUMNS.values())
# Staging table of one batch, typed like rag_ops.
_BATCH_DDL = "CREATE OR REPLACE TEMP TABLE _batch (" + ", ".join(
    f"{col} {typ}" for col, typ in COLUMNS.values()) + ")"
# The fast path reads a block with DuckDB's own JSON reader, every field as raw JSON, then checks
# types strictly (no silent casts of "5" to 5 or true to 1.0) before converting.
_RAW_COLUMNS = "{" + ", ".join(f"'{k}': 'JSON'" for k in COLUMNS) + "}"
_NUM_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
_VALID = " AND ".join(
    [f'"{k}" IS NOT NULL' for k in REQUIRED]
    + [f'("{k}" IS NULL OR json_type("{k}") IN {_NUM_TYPES})' for k in NUMERIC]
    + [f'("{k}" IS NULL OR json_type("{k}") = \'VARCHAR\')' for k in COLUMNS if k not in NUMERIC]
    + ["TRY_CAST(\"duration_s\" ->> '$' AS DOUBLE) >= 0"])
_CONVERT = ", ".join(f"TRY_CAST(\"{k}\" ->> '$' AS {t})" for k, (_, t) in COLUMNS.items())


def stage_block_fast(con: Any, block_file: Path, lines: int) -> bool:
    """Read a block of complete lines into the temp table ``_raw`` with DuckDB's JSON reader.
    False when any line is not a valid record: the caller then parses line by line and
    quarantines. Runs outside a transaction (a failed statement would abort it)."""
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_json(?, "
                    f"format = 'newline_delimited', columns = {_RAW_COLUMNS})", [str(block_file)])
        total, valid = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_VALID}) FROM _raw").fetchall()[0]
    except duckdb.Error:  # malformed JSON, a non-object line...
        return False
    return total == lines and valid == total


def stage_rows(con: Any, rows: list[dict[str, Any]]) -> None:
    """Stage parsed records (the slow path) into ``_batch``, column by column."""
    params = [[r.get(k) for r in rows] for k in COLUMNS]
    con.execute("INSERT INTO _batch SELECT " + ", ".join(
        f"unnest(${i + 1}::{t}[])" for i, (_, t) in enumerate(COLUMNS.values())), params)


def batch_aggregates(con: Any) -> list[dict[str, Any]]:
    """Per (op, mode) of the staged batch: count, sum, errors, model time, histogram buckets."""
    buckets = ", ".join(f"count(*) FILTER (WHERE duration_s <= {b})" for b in LATENCY_BUCKETS)
    rows = con.execute(
        "SELECT op, coalesce(mode, ''), count(*), sum(duration_s), "
        "count(*) FILTER (WHERE coalesce(outcome, 'ok') <> 'ok'), sum(coalesce(llm_s, 0)), "
        "sum(coalesce(embed_s, 0)), sum(coalesce(llm_calls, 0)), sum(coalesce(embed_calls, 0)), "
        f"[{buckets}] FROM _batch GROUP BY ALL").fetchall()
    return [{"op": r[0], "mode": r[1], "count": r[2], "sum": r[3], "errors": r[4], "llm_s": r[5],
             "embed_s": r[6], "llm_calls": r[7], "embed_calls": r[8], "buckets": r[9]}
            for r in rows]


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
        self.on_rows: Callable[[list[dict[str, Any]]], None] | None = None
        self._block_file = self.spool_dir / ".ingest-block.tmp"

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
        aggregates: list[dict[str, Any]] = []
        with self.store.transaction_free() as raw_con:
            fast = False
            if n_complete and complete.strip():
                self._block_file.write_bytes(complete)
                try:
                    fast = stage_block_fast(raw_con, self._block_file,
                                            sum(1 for line in lines[:n_complete] if line.strip()))
                finally:
                    self._block_file.unlink(missing_ok=True)
            slow_lines = lines[n_complete:] if fast else lines
            pos = offset + (len(complete) if fast else 0)
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
            with self.store.transaction() as con:
                con.execute(_BATCH_DDL)
                if fast:
                    con.execute(f"INSERT INTO _batch SELECT {_CONVERT} FROM _raw")
                if rows:
                    stage_rows(con, rows)
                n = con.execute("SELECT count(*) FROM _batch").fetchall()[0][0]
                if n:
                    con.execute(f"INSERT INTO rag_ops ({TARGET}) SELECT * FROM _batch")
                    aggregates = batch_aggregates(con)
                if bad:
                    con.executemany("INSERT INTO spool_quarantine VALUES (?, ?, ?, ?, ?)", bad)
                new_offset = offset + consumed
                con.execute("INSERT OR REPLACE INTO spool_offsets VALUES (?, ?, ?, ?)",
                            [path.name, inode, new_offset, now])
            raw_con.execute("DROP TABLE IF EXISTS _raw")
        if aggregates and self.on_rows is not None:
            self.on_rows(aggregates)
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
