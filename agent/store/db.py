"""The DuckDB metrics store. Only the agent opens it.

Writes are serialised by the store's lock on one connection. Reads (:meth:`Store.read`) run on
cursors of their own, each a connection to the same database: DuckDB gives each query a snapshot
of what was committed, so a console's question never waits behind a long write that holds the
lock (a spool backlog's ingest pass, a retention delete, a rollup). Only a checkpoint and the
close keep readers out (:class:`ReadGate`): DuckDB refuses a checkpoint while another
transaction runs.

Writes are batched: collectors append samples to an in-memory buffer and :meth:`flush`
inserts them as one Arrow table (DuckDB ingests Arrow at millions of rows per second where
``executemany`` manages thousands).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from lightkeeper.agent.store.opswindows import OpsWindows
from lightkeeper.agent.store.schema import LATEST, MIGRATIONS
from lightkeeper.agent.store.serieswindows import SeriesWindows
from lightkeeper.backup.fsutil import fsync_dir
from lightkeeper.logs import get_logger, redact

log = get_logger("store")

Sample = tuple[float, str, str, float]  # (ts, metric, label, value)


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says why and what to do."""


def _describe_open_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "lock" in text.lower() or "Conflicting" in text:
        return (f"metrics store {path} is locked by another process ({text.splitlines()[0]}); "
                "only one agent may own it")
    if "not a valid DuckDB" in text or "Corrupt" in text or "corrupt" in text or \
            "Serialization" in text or "checksum" in text.lower():
        return (f"metrics store {path} is unreadable or corrupt ({text.splitlines()[0]}). "
                "The file was left untouched: move it aside (or restore it from a backup) "
                "and start the agent again")
    return f"cannot open metrics store {path}: {text.splitlines()[0] if text else exc!r}"


EngineConfig = dict[str, str | bool | int | float | list[str]]  # duckdb.connect(config=...)


def _engine_config(memory_limit_mb: int | None, threads: int | None) -> EngineConfig:
    """DuckDB's limits for the agent's store (``store.memory_limit_mb``, ``store.threads``).

    Left to its defaults, DuckDB keeps a buffer cache of up to 80 % of the machine's RAM and
    runs every query on as many threads as there are cores: the agent's resident size grew with
    uptime (the soak bench: 182 MB at day 1, 252 MB at day 30), and its small queries paid for
    scheduling work across threads. Work larger than the limit spills to a temp directory beside
    the store, in the agent's own state directory."""
    config: EngineConfig = {}
    if memory_limit_mb is not None:
        config["memory_limit"] = f"{memory_limit_mb}MB"
    if threads is not None:
        config["threads"] = threads
    return config


class ReadGate:
    """Many readers at once, or one exclusive holder (a checkpoint, the close) and no reader.

    The exclusive side waits for the readers inside to finish and keeps new ones out until it is
    done; readers never wait for the store's write lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Store:
    def __init__(self, path: Path, read_only: bool = False, memory_limit_mb: int | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()  # the writing connection's; writers, snapshots
        self.readers = ReadGate()  # the reading cursors'; held shut by checkpoints and the close
        # idle reading cursors (all of them whenever no reader runs: the close drains it)
        self._cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._cursor_lock = threading.Lock()
        self._buffer: list[Sample] = []
        self._buffer_lock = threading.Lock()
        self.rows_written = 0
        self.flushes = 0
        self.last_flush: float | None = None
        self.last_write_error: str | None = None
        # the LightRAG latency windows the agent's calls hold (their writers: ingest, retention)
        self.ops_windows = OpsWindows()
        # the chart series the agent's calls hold (their writers: flush, rollup, retention)
        self.series_windows = SeriesWindows()
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {self.path.parent}: "
                                 f"{exc.strerror}") from None
        self._read_only = read_only
        self.engine_config = _engine_config(memory_limit_mb, threads)
        self.con = self._connect()
        if not read_only:
            self.migrate()
        self._cursor_source = self.con.cursor()  # makes the reading cursors; never queries

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), read_only=self._read_only,
                                  config=self.engine_config)
        except (duckdb.Error, OSError) as exc:
            raise StoreError(_describe_open_error(self.path, exc)) from None

    def _disconnect(self) -> None:
        """Close every cursor and the connection (with :attr:`lock` and the readers' gate held:
        no cursor is in use)."""
        try:
            while not self._cursors.empty():
                self._cursors.get_nowait().close()
            self._cursor_source.close()
        finally:
            self.con.close()

    def replace_file(self, new: Path) -> None:
        """Put ``new``, a whole store written and closed, in place of the store's file and open
        it (agent.store.compact), with :attr:`lock` and the readers' gate held and the store
        checkpointed. Temp tables of the old connection are gone. Raises StoreError, the store
        unchanged and open, if the old file still has a WAL once closed."""
        self._disconnect()
        try:
            if self.path.with_name(self.path.name + ".wal").exists():
                raise StoreError(f"cannot replace metrics store {self.path}: a WAL remained "
                                 "after its checkpoint; the store is unchanged")
            os.replace(new, self.path)
            fsync_dir(self.path.parent)
        finally:
            self.con = self._connect()
            self._cursor_source = self.con.cursor()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self.lock:
            exists = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
            ).fetchall()[0][0]
            if not exists:
                return 0
            rows = self.con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            return int(rows[0][0]) if rows else 0

    def migrate(self) -> None:
        """Every pending migration in one transaction: all or none land, and a new store's
        schema costs one commit, not one per version (half the time of opening a new store)."""
        current = self.schema_version()
        if current > LATEST:
            raise StoreError(f"metrics store {self.path} has schema {current}, newer than this "
                             f"lightkeeper understands ({LATEST}); upgrade lightkeeper")
        pending = [m for m in MIGRATIONS if m[0] > current]
        if not pending:
            return
        with self.lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                for _version, _name, statements in pending:
                    for sql in statements:
                        self.con.execute(sql)
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                                 [str(LATEST)])
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
        for version, name, _statements in pending:
            log.info("store.migrated", version=version, name=name)

    # -- generic access --------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.lock:
            return self.con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return _dicts(self.con.execute(sql, params or []))

    def read(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """A query that only reads, on a cursor of its own: it sees what was committed when it
        started and never waits for a writer holding :attr:`lock`. Not for a read whose answer
        decides a write (a next number, a check then an insert): those use :meth:`execute`."""
        with self.readers.shared(), self._cursor() as cur:
            return cur.execute(sql, params or []).fetchall()

    def read_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """:meth:`read`, each row as a dict by column name."""
        with self.readers.shared(), self._cursor() as cur:
            return _dicts(cur.execute(sql, params or []))

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An idle reading cursor, or a new one (as many as readers ever ran at once)."""
        try:
            cur = self._cursors.get_nowait()
        except queue.Empty:
            # made from a connection that never queries (the writer's may be in a transaction)
            with self._cursor_lock:
                cur = self._cursor_source.cursor()
        try:
            yield cur
        finally:
            self._cursors.put(cur)

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def transaction_free(self) -> _Locked:
        """The connection under the store's lock, outside any transaction (autocommit)."""
        return _Locked(self)

    # -- samples ---------------------------------------------------------------------------
    def add_samples(self, samples: Iterable[Sample]) -> None:
        """Queue samples for the next :meth:`flush` (cheap, thread-safe)."""
        with self._buffer_lock:
            self._buffer.extend(samples)

    def drop_oldest(self, keep: int) -> int:
        """Bound the queue to its newest ``keep`` samples (a long outage). Returns how many went."""
        with self._buffer_lock:
            dropped = max(0, len(self._buffer) - keep)
            del self._buffer[:dropped]
        return dropped

    def pending(self) -> int:
        with self._buffer_lock:
            return len(self._buffer)

    def flush(self) -> int:
        with self._buffer_lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        ts, metric, label, value = zip(*batch, strict=True)
        try:
            # one statement per batch: the columns travel as four lists (no row-at-a-time
            # INSERT, and no pyarrow, which would cost the agent ~90 MB with pandas)
            with self.series_windows.writing() as written, self.lock:
                self.con.execute(
                    "INSERT INTO samples SELECT unnest($1::DOUBLE[]), unnest($2::VARCHAR[]), "
                    "unnest($3::VARCHAR[]), unnest($4::DOUBLE[])",
                    [list(ts), list(metric), list(label), list(value)])
                written.rows = batch  # folded into the chart series held in memory
        except Exception as exc:  # noqa: BLE001  any write failure keeps the batch for the next attempt
            # Keep the batch for the next attempt (for example after disk space is freed).
            with self._buffer_lock:
                self._buffer[:0] = batch
            self.last_write_error = f"{type(exc).__name__}: {exc}"
            raise StoreError(f"cannot write {len(batch)} samples to {self.path}: {exc}") from None
        self.last_write_error = None
        self.rows_written += len(batch)
        self.flushes += 1
        self.last_flush = time.time()
        return len(batch)

    # -- events ----------------------------------------------------------------------------
    def add_event(self, kind: str, event: str, level: str = "info", component: str = "agent",
                  actor: str | None = None, ts: float | None = None,
                  context: dict[str, Any] | None = None) -> int:
        """Store an event. ``context`` is a dict (not keyword arguments), so context keys such
        as ``kind`` or ``ts`` never collide with the event's own fields."""
        ctx = json.dumps(redact(context or {}), default=str)
        with self.lock:
            row = self.con.execute(
                "INSERT INTO events (ts, level, kind, component, event, actor, context)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [ts or time.time(), level, kind, component, event, actor, ctx],
            ).fetchall()[0]
        return int(row[0])

    def events(self, since_id: int = 0, limit: int = 200, level: str | None = None,
               kind: str | None = None, search: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, ts, level, kind, component, event, actor, context FROM events WHERE id > ?"
        params: list[Any] = [since_id]
        if level:
            order = ["debug", "info", "warning", "error", "critical"]
            allowed = order[order.index(level):] if level in order else [level]
            sql += " AND level IN (" + ",".join("?" * len(allowed)) + ")"
            params += allowed
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if search:
            sql += " AND (event ILIKE ? OR CAST(context AS VARCHAR) ILIKE ?)"
            params += [f"%{search}%", f"%{search}%"]
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = self.read_dicts(sql, params)
        for r in rows:
            r["context"] = json.loads(r["context"]) if r["context"] else {}
        return list(reversed(rows))

    # -- maintenance -----------------------------------------------------------------------
    def checkpoint(self) -> None:
        with self.lock, self.readers.exclusive():  # DuckDB refuses it while a reader runs
            self.con.execute("CHECKPOINT")

    def size_bytes(self) -> int:
        total = 0
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def memory_bytes(self) -> int:
        """What DuckDB's buffer manager holds (cached blocks, query buffers), in bytes."""
        return int(self.read("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()")
                   [0][0])

    def close(self) -> None:
        with self.lock, self.readers.exclusive():  # no reader inside: every cursor is idle
            try:
                self.con.execute("CHECKPOINT")
            finally:
                self._disconnect()


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query, each as a dict by column name."""
    cols = [d[0] for d in cur.description or []]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


class _Locked:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.store.lock.acquire()
        return self.store.con

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.store.lock.release()


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.store.lock.acquire()
        self.store.con.execute("BEGIN TRANSACTION")
        return self.store.con

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.store.con.execute("COMMIT")
            else:
                self.store.con.execute("ROLLBACK")
        finally:
            self.store.lock.release()
