"""Ingestion of LightRAG operation records from the spool into ``rag_ops``, exactly once.

For each spool file the agent keeps ``(file, inode, offset)`` in ``spool_offsets``. A batch's rows,
its quarantined lines and the new offset are committed in one transaction, so an agent killed at
any moment neither loses nor duplicates an operation. A last line without its newline waits for
the writer, unless the writer is gone (then it is quarantined: it can never complete).

The spool is written by other accounts (docs/security.md): nothing in it is trusted. Files are
opened without following symlinks and must be regular files with one link; the staging file of a
block lives in the agent's own state directory, never in the spool; every field of a record is
checked (types, ranges, finite numbers, known operations and modes, valid text) and a record that
fails goes to quarantine while the rest of its file and the other files go on.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psutil

from lightkeeper import procstart
from lightkeeper.agent.store import ophist, slowops
from lightkeeper.catalog import LATENCY_BUCKETS
from lightkeeper.ids import USER_ID_RE
from lightkeeper.logs import get_logger
from lightkeeper.rag.spool import MODES, OPS, OUTCOMES

log = get_logger("ingest")

NAME_RE = re.compile(r"ops-(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<seq>\d{6})\.jsonl")
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
TEXT = [k for k in COLUMNS if k not in NUMERIC]
TARGET = ", ".join(col for col, _ in COLUMNS.values())
# Staging table of one batch, typed like rag_ops.
_BATCH_DDL = "CREATE OR REPLACE TEMP TABLE _batch (" + ", ".join(
    f"{col} {typ}" for col, typ in COLUMNS.values()) + ")"

# What a record may hold. Anything outside goes to quarantine: a value the store cannot hold
# would abort the batch, and NaN, infinities or absurd times poison sums and percentiles.
MIN_TS = 946_684_800.0  # 2000-01-01: older records are clocks gone wrong
FUTURE_SLACK_S = 86_400.0  # a record may be at most a day ahead of the agent's clock
MAX_SECONDS = 7 * 86_400.0  # duration_s, llm_s, embed_s
INT_MAX = {"INTEGER": 2**31 - 1, "BIGINT": 2**63 - 1}
TEXT_MAX_BYTES = {"user": 256, "op": 16, "mode": 16, "outcome": 32, "error_class": 256,
                  "run_id": 128, "op_id": 128}
# C0 and C1 controls (an 8-bit CSI, U+009B, starts a terminal escape just like ESC)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_USER_ID_SQL = USER_ID_RE.pattern.removesuffix("\\Z")  # RE2 full match, same pattern
CHOICES: dict[str, tuple[str, ...]] = {"op": OPS, "mode": MODES, "outcome": OUTCOMES}


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _valid_sql(max_ts: float) -> str:
    """The fast path's check of a record, the same rules as :func:`parse_line`."""
    conds = [f'"{k}" IS NOT NULL' for k in REQUIRED]
    for k, (_, typ) in COLUMNS.items():
        v = f"(\"{k}\" ->> '$')"
        if typ == "DOUBLE":
            lo, hi = (MIN_TS, max_ts) if k == "ts" else (0.0, MAX_SECONDS)
            cond = (f"json_type(\"{k}\") IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND "
                    f"isfinite(TRY_CAST({v} AS DOUBLE)) AND "
                    f"TRY_CAST({v} AS DOUBLE) BETWEEN {lo!r} AND {hi!r}")
        elif typ in INT_MAX:
            cond = (f"json_type(\"{k}\") IN ('BIGINT', 'UBIGINT') AND "
                    f"TRY_CAST({v} AS HUGEINT) BETWEEN 0 AND {INT_MAX[typ]}")
        else:
            cond = (f"json_type(\"{k}\") = 'VARCHAR' AND strlen({v}) <= {TEXT_MAX_BYTES[k]} "
                    f"AND NOT regexp_matches({v}, '[\\x00-\\x1f\\x7f-\\x9f]')")
            if k in CHOICES:
                cond += f" AND {v} IN {_sql_list(CHOICES[k])}"
            if k == "user":  # a user id, as the data root names users (ids.USER_ID_RE)
                cond += f" AND regexp_full_match({v}, '{_USER_ID_SQL}')"
        conds.append(f'("{k}" IS NULL OR ({cond}))')
    return " AND ".join(conds)


# The fast path reads a block with DuckDB's own JSON reader, every field as raw JSON, then checks
# types strictly (no silent casts of "5" to 5 or true to 1.0) before converting.
_RAW_COLUMNS = "{" + ", ".join(f"'{k}': 'JSON'" for k in COLUMNS) + "}"
_CONVERT = ", ".join(f"TRY_CAST(\"{k}\" ->> '$' AS {t})" for k, (_, t) in COLUMNS.items())


def stage_block_fast(con: Any, block_file: Path | str, lines: int,
                     now: float | None = None) -> bool:
    """Read a block of complete lines into the temp table ``_raw`` with DuckDB's JSON reader.
    False when any line is not a valid record: the caller then parses line by line and
    quarantines. Runs outside a transaction (a failed statement would abort it)."""
    max_ts = (time.time() if now is None else now) + FUTURE_SLACK_S
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_json(?, "
                    f"format = 'newline_delimited', columns = {_RAW_COLUMNS})", [str(block_file)])
        total, valid = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_valid_sql(max_ts)}) FROM _raw"
        ).fetchall()[0]
    except (duckdb.Error, UnicodeDecodeError):  # malformed JSON, a non-object line... (DuckDB
        # raises UnicodeDecodeError when its own error message quotes a broken character)
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
    """A spool line that is not a valid record; the message says what is wrong."""


def _no_constant(name: str) -> Any:
    raise BadRecord(f"{name} is not a number")


def parse_line(raw: bytes, now: float | None = None) -> dict[str, Any]:
    """One spool line as a record, or :class:`BadRecord`. The only exception it raises."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except BadRecord:
        raise
    except UnicodeDecodeError:
        raise BadRecord("not UTF-8") from None
    except ValueError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    except RecursionError:
        raise BadRecord("not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadRecord("not a JSON object")
    missing = [k for k in REQUIRED if doc.get(k) is None]
    if missing:
        raise BadRecord("missing " + ", ".join(missing))
    max_ts = (time.time() if now is None else now) + FUTURE_SLACK_S
    for k, (_, typ) in COLUMNS.items():
        v = doc.get(k)
        if v is None:
            continue
        if typ == "DOUBLE":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BadRecord(f"{k} is not a number: {v!r:.60}")
            if not math.isfinite(v):
                raise BadRecord(f"{k} is not finite: {v!r}")
            lo, hi = (MIN_TS, max_ts) if k == "ts" else (0.0, MAX_SECONDS)
            if not lo <= v <= hi:
                raise BadRecord(f"{k} = {v!r} is out of range [{lo:.0f}, {hi:.0f}]")
        elif typ in INT_MAX:
            if type(v) is not int:
                raise BadRecord(f"{k} is not an integer: {v!r:.60}")
            if not 0 <= v <= INT_MAX[typ]:
                raise BadRecord(f"{k} = {v} is out of range [0, {INT_MAX[typ]}]")
        else:
            if not isinstance(v, str):
                raise BadRecord(f"{k} is not a string")
            try:
                size = len(v.encode("utf-8"))
            except UnicodeEncodeError:
                raise BadRecord(f"{k} is not valid Unicode (lone surrogate)") from None
            if size > TEXT_MAX_BYTES[k]:
                raise BadRecord(f"{k} is longer than {TEXT_MAX_BYTES[k]} bytes")
            if CONTROL_RE.search(v):
                raise BadRecord(f"{k} holds control characters")
            if k == "user" and not USER_ID_RE.fullmatch(v):
                raise BadRecord(f"user {v[:40]!r} is not a valid user id")
            if k in CHOICES and v not in CHOICES[k]:
                raise BadRecord(f"unknown {k} {v[:40]!r}: expected one of "
                                + ", ".join(CHOICES[k]))
    return doc


@dataclass
class IngestStats:
    rows: int = 0
    quarantined: int = 0
    files_removed: int = 0
    skipped_files: int = 0
    passes: int = 0
    last_pass: float | None = None
    pending_bytes: int = 0
    pending_since: dict[str, float] = field(default_factory=dict)
    # health: a pass in progress, the last pass that completed without error, the last error
    pass_started: float | None = None
    last_ok: float | None = None
    last_error: str | None = None
    failing_since: float | None = None
    file_errors: dict[str, str] = field(default_factory=dict)


# Passes run at least every 2 s: no completed pass for this long means ingestion is stuck.
STALL_AFTER_S = 30.0


class NotSpoolFile(OSError):
    """A name in the spool that is not a regular file of its own (symlink, FIFO, hard link)."""


class StageError(RuntimeError):
    """The agent's own staging directory refused the block (gone, full, not writable): the
    file's error, so the pass records it; never taken for the spool file having vanished."""


def open_spool_file(path: Path) -> tuple[int, os.stat_result]:
    """Open a spool file for reading without following a symlink and without blocking on a
    FIFO; refuse anything but a regular file with one link (a hard link to a file the writer
    could not read itself would hand its bytes to the agent)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                 | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotSpoolFile(f"{path.name} is not a regular file")
        if st.st_nlink != 1:
            raise NotSpoolFile(f"{path.name} has {st.st_nlink} links")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class SpoolIngester:
    def __init__(self, store: Any, spool_dir: Path, host: str | None = None,
                 stage_dir: Path | None = None) -> None:
        """``stage_dir`` holds the staging file of each block: the agent's own directory
        (never the spool, which other accounts write). Default: a private temporary one."""
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.host = host or socket.gethostname()
        self.stats = IngestStats()
        self.on_rows: Callable[[list[dict[str, Any]]], None] | None = None
        self.created = time.time()
        if stage_dir is not None:
            self.stage_dir = Path(stage_dir)
        else:  # its own, removed with the ingester (or at exit)
            self.stage_dir = Path(tempfile.mkdtemp(prefix="lightkeeper-ingest-"))
            weakref.finalize(self, shutil.rmtree, self.stage_dir, ignore_errors=True)
        for stale in self.stage_dir.glob(".ingest-block.*.tmp"):  # left by a killed agent
            stale.unlink(missing_ok=True)
        self._warned: dict[str, str] = {}
        # True once a pass has seen an empty spool and left spool_offsets empty (this ingester
        # is its only writer): the next passes over an empty spool skip the query
        self._no_offsets = False

    # -- health -----------------------------------------------------------------------------
    def lag(self, now: float | None = None) -> float:
        """Seconds the oldest waiting operation has waited, counting a pass that is stuck, a
        failing ingest (since its last good pass) and a loop that stopped running passes."""
        now = time.time() if now is None else now
        s = self.stats
        ages = [now - t for t in s.pending_since.values()]
        if s.pass_started is not None:
            ages.append(now - s.pass_started)
        if s.failing_since is not None:
            ages.append(now - (s.last_ok or self.created))
        since_pass = now - (s.last_pass or self.created)
        if since_pass > STALL_AFTER_S:
            ages.append(since_pass)
        return max([0.0, *ages])

    def _warn_once(self, name: str, event: str, **ctx: Any) -> None:
        key = event + repr(sorted(ctx.items()))
        if self._warned.get(name) != key:
            self._warned[name] = key
            log.warning(event, file=name, **ctx)

    # -- passes -----------------------------------------------------------------------------
    def _offsets(self) -> dict[str, tuple[int, int]]:
        rows = self.store.execute("SELECT file, inode, off FROM spool_offsets")
        return {f: (int(i or 0), int(o)) for f, i, o in rows}

    def _finished(self, name: str, names: set[str]) -> bool:
        m = NAME_RE.fullmatch(name)
        if not m:
            return False
        prefix = f"ops-{m['host']}-{m['pid']}-{m['start']}-"
        seq = int(m["seq"])
        if any(n.startswith(prefix) and n != name and n[len(prefix):len(prefix) + 6].isdigit()
               and int(n[len(prefix):len(prefix) + 6]) > seq for n in names):
            return True
        if m["host"] != self.host:
            return False  # cannot tell for another host: wait for its next file
        pid = int(m["pid"])  # NAME_RE: digits
        ticks = procstart.start_ticks(pid)  # one read of /proc/<pid>/stat
        if ticks is None:
            return True  # gone (or exited, not yet reaped)
        # its wall-clock start as psutil's create_time() gives it, which the writer named
        if abs(psutil.boot_time() + ticks / procstart.CLOCK_TICKS - int(m["start"])) <= 2:
            return False
        # The pid runs a process whose wall-clock start is another: a new process that got
        # the pid, or the writer itself after a clock step (which moves the create time of
        # every process, lightkeeper.procstart). The writer keeps its current file open.
        return not procstart.has_open(pid, os.path.join(os.path.realpath(self.spool_dir), name))

    def _list(self) -> dict[str, os.stat_result]:
        """Spool files by name with their lstat; names that are not regular files of their own
        are skipped with a warning (once per name), never opened."""
        found: dict[str, os.stat_result] = {}
        try:
            entries = list(os.scandir(self.spool_dir))
        except FileNotFoundError:
            return found
        for e in entries:
            if not e.name.endswith(".jsonl"):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                self.stats.skipped_files += 1
                self._warn_once(e.name, "ingest.file_skipped",
                                reason="not a regular file" if not stat.S_ISREG(st.st_mode)
                                else f"{st.st_nlink} hard links")
                continue
            found[e.name] = st
        return found

    def ingest_once(self, now: float | None = None) -> int:
        """One pass over the spool; returns the number of rows ingested. A file that fails is
        recorded (``stats.file_errors``) and the others go on; a pass that cannot run at all
        raises after recording its error, and both count into :meth:`lag`."""
        now = time.time() if now is None else now
        s = self.stats
        s.pass_started = now
        try:
            total = self._pass(now)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}", now)
            raise
        finally:
            s.pass_started = None
            s.passes += 1
            s.last_pass = now
        if s.file_errors:
            self._failed("; ".join(f"{n}: {e}" for n, e in sorted(s.file_errors.items())), now)
        else:
            s.last_ok, s.last_error, s.failing_since = now, None, None
        return total

    def _failed(self, error: str, now: float) -> None:
        s = self.stats
        if s.failing_since is None:
            s.failing_since = now
        s.last_error = error

    def _pass(self, now: float) -> int:
        files = self._list()
        if not files and self._no_offsets:  # the idle agent's pass: nothing to read or forget
            self.stats.pending_since.clear()
            self.stats.file_errors.clear()
            self.stats.pending_bytes = 0
            return 0
        names = set(files)
        offsets = self._offsets()
        for name, st in files.items():  # count waiting bytes first: a stuck pass shows as lag
            inode, offset = offsets.get(name, (st.st_ino, 0))
            if st.st_size > (offset if inode == st.st_ino else 0):
                self.stats.pending_since.setdefault(name, now)
        total = 0
        pending_bytes = 0
        for name in sorted(names):
            path = self.spool_dir / name
            st = files[name]
            inode, offset = offsets.get(name, (st.st_ino, 0))
            if inode != st.st_ino or offset > st.st_size:
                log.warning("ingest.file_replaced", file=name, old_offset=offset)
                offset = 0
            finished = self._finished(name, names)
            try:
                n, offset = self._ingest_file(path, st, offset, finished, now)
            except NotSpoolFile as exc:  # replaced by a link or a FIFO since the listing
                self._warn_once(name, "ingest.file_skipped", reason=str(exc))
                self.stats.pending_since.pop(name, None)
                continue
            except FileNotFoundError:
                self.stats.pending_since.pop(name, None)
                continue
            except Exception as exc:  # noqa: BLE001  one file failing (the store refused its batch) must not stop the others
                error = f"{type(exc).__name__}: {exc}"
                if self.stats.file_errors.get(name) != error:
                    log.error("ingest.file_failed", file=name, offset=offset, error=error)
                self.stats.file_errors[name] = error
                pending_bytes += max(st.st_size - offset, 0)
                continue
            self.stats.file_errors.pop(name, None)
            total += n
            pending = max(st.st_size - offset, 0)
            pending_bytes += pending
            if not pending:
                self.stats.pending_since.pop(name, None)
            if finished and offset >= st.st_size:
                self._remove(path, name)
        for gone in set(self.stats.pending_since) - names:
            self.stats.pending_since.pop(gone, None)
        for gone in set(self.stats.file_errors) - names:
            self.stats.file_errors.pop(gone, None)
        # forget offsets of files that no longer exist
        stale = set(offsets) - names
        if stale:
            self.store.execute("DELETE FROM spool_offsets WHERE file IN (" +
                               ",".join("?" * len(stale)) + ")", sorted(stale))
        self.stats.pending_bytes = pending_bytes
        self._no_offsets = not names
        return total

    def _ingest_file(self, path: Path, st: os.stat_result, offset: int, finished: bool,
                     now: float) -> tuple[int, int]:
        fd, fst = open_spool_file(path)
        try:
            if fst.st_ino != st.st_ino:
                raise NotSpoolFile(f"{path.name} was replaced during the pass")
            total = 0
            while st.st_size > offset:
                n, offset, waiting = self._ingest_chunk(fd, path.name, st.st_ino, offset,
                                                        finished, now)
                total += n
                if waiting:
                    break
            return total, offset
        finally:
            os.close(fd)

    def _ingest_chunk(self, fd: int, name: str, inode: int, offset: int, finished: bool,
                      now: float) -> tuple[int, int, bool]:
        data = os.pread(fd, MAX_BATCH_BYTES, offset)
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
        rows: list[tuple[int, bytes, dict[str, Any]]] = []
        bad: list[tuple[float, str, int, str, str]] = []
        n_complete = complete.count(b"\n")
        aggregates: list[dict[str, Any]] = []

        def quarantine_line(line_off: int, raw: bytes, error: str) -> None:
            bad.append((now, name, line_off, raw[:4000].decode("utf-8", "replace"), error))

        with self.store.transaction_free() as raw_con:
            # staged outside the transaction: a statement that fails there aborts nothing
            raw_con.execute(_BATCH_DDL)
            fast = False
            if n_complete and complete.strip():
                fast = self._stage_fast(raw_con, complete,
                                        sum(1 for line in lines[:n_complete] if line.strip()),
                                        now)
            if fast:
                raw_con.execute(f"INSERT INTO _batch SELECT {_CONVERT} FROM _raw")
            slow_lines = lines[n_complete:] if fast else lines
            pos = offset + (len(complete) if fast else 0)
            for raw in slow_lines:
                line_off = pos
                pos += len(raw) + 1
                if not raw.strip():
                    continue
                try:
                    rows.append((line_off, raw, parse_line(raw, now)))
                except BadRecord as exc:
                    quarantine_line(line_off, raw, str(exc))
            if rows:
                self._stage_slow(raw_con, rows, quarantine_line)
            windows = self.store.ops_windows  # the idle calls' windows held in memory
            with windows.writing() as written, self.store.transaction() as con:
                n = con.execute("SELECT count(*) FROM _batch").fetchall()[0][0]
                if n:
                    con.execute(f"INSERT INTO rag_ops ({TARGET}) SELECT * FROM _batch")
                    con.execute(ophist.INSERT_BATCH)  # the idle calls' histograms
                    if windows.wanted():
                        written.rows = con.execute(ophist.BATCH_ROWS).fetchall()
                    hour_mark = ophist.hour_mark(con)
                    if hour_mark is not None:  # a backlog for hours already rolled up
                        con.execute(ophist.INSERT_BATCH_LATE, [hour_mark])
                    con.execute(slowops.INSERT_BATCH)  # and slowest operations
                    aggregates = batch_aggregates(con)
                if bad:
                    con.executemany("INSERT INTO spool_quarantine VALUES (?, ?, ?, ?, ?)", bad)
                new_offset = offset + consumed
                con.execute("INSERT OR REPLACE INTO spool_offsets VALUES (?, ?, ?, ?)",
                            [name, inode, new_offset, now])
            raw_con.execute("DROP TABLE IF EXISTS _raw")
            raw_con.execute("DROP TABLE IF EXISTS _batch")
        if aggregates and self.on_rows is not None:
            self.on_rows(aggregates)
        for _ts, fname, off, _line, err in bad:
            log.error("ingest.quarantined", file=fname, offset=off, error=err)
        self.stats.rows += n
        self.stats.quarantined += len(bad)
        return n, new_offset, waiting

    def _stage_fast(self, con: Any, block: bytes, lines: int, now: float) -> bool:
        """Stage a block through DuckDB's JSON reader. The staging file is created exclusively
        (O_EXCL, unpredictable name, 0600) in the agent's own directory."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ingest-block.", suffix=".tmp",
                                       dir=self.stage_dir)
        except OSError as exc:  # the agent's own directory: not a spool file that vanished
            raise StageError(f"cannot create a staging file in {self.stage_dir}: "
                             f"{exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(block)
            return stage_block_fast(con, tmp, lines, now)
        finally:
            os.unlink(tmp)

    @staticmethod
    def _stage_slow(con: Any, rows: list[tuple[int, bytes, dict[str, Any]]],
                    quarantine_line: Callable[[int, bytes, str], None]) -> None:
        """Stage checked records; should the store still refuse one, stage them one by one
        and quarantine the ones it refuses (with its reason), so one record never blocks
        the file."""
        try:
            stage_rows(con, [doc for _, _, doc in rows])
            return
        except duckdb.Error:
            pass
        for line_off, raw, doc in rows:
            try:
                stage_rows(con, [doc])
            except duckdb.Error as exc:
                quarantine_line(line_off, raw, f"refused by the store: {exc}"[:500])

    def _remove(self, path: Path, name: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.store.execute("DELETE FROM spool_offsets WHERE file = ?", [name])
        self.stats.files_removed += 1
        self._warned.pop(name, None)
        log.debug("ingest.file_done", file=name)


def quarantine(store: Any, limit: int = 100) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT ts, file, off AS offset, line, error FROM spool_quarantine "
                             "ORDER BY ts DESC LIMIT ?", [limit])
