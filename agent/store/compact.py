"""Compacting the metrics store: its data copied into a fresh file that takes the old one's place.

DuckDB reuses the blocks that deletes free, but never gives them back to the file system unless
they sit at the file's end, and a checkpoint writes the new version of a table's changed row
groups before it frees the old one. A store whose retention deletes every day therefore grows
to its high-water mark and keeps the free blocks: in the soak bench they went from 3.5 MiB at
day 7 to 8.25 MiB at day 30 beside 15 MiB of data, and a long-lived store reaches many times
its data (DuckDB's answer, "Reclaiming space": copy the database into a new file,
``COPY FROM DATABASE``).

:func:`compact` does that while the store's writers wait (samples queue in memory, spool
files on disk); the console's reads go on during the copy and wait only for the checkpoint and
the swap of the files. The copy is made in a private directory beside the store (created
exclusively, owner-only), every table must hold as many rows in it as in the store, and it is
flushed to disk, then renamed over the store, which is reopened. A failure before the rename
(a full disk, a copy that does not match) leaves the store as it was and removes the copy; a
crash at any moment leaves either the old file or the new one, each whole (the old one was
checkpointed first, so it has no WAL to lose). :func:`due` decides when the copy pays: free
blocks at least ``share`` of the file and ``min_free`` bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lightkeeper.agent.store.db import Store, StoreError
from lightkeeper.backup.fsutil import fsync_file
from lightkeeper.logs import get_logger

log = get_logger("store.compact")

ALIAS = "lk_compacting"


@dataclass(frozen=True)
class FileBlocks:
    """The store file's blocks (DuckDB's ``pragma_database_size``)."""
    block_size: int
    used: int
    free: int

    @property
    def free_bytes(self) -> int:
        return self.free * self.block_size

    @property
    def total_bytes(self) -> int:
        return (self.used + self.free) * self.block_size


def blocks(store: Store) -> FileBlocks:
    block, used, free = store.read(
        "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size()")[0]
    return FileBlocks(int(block), int(used), int(free))


def due(b: FileBlocks, share: float, min_free: int) -> bool:
    """Free blocks worth a copy of the store: ``share`` of the file (0: never) and ``min_free``
    bytes."""
    return share > 0 and b.free_bytes >= min_free and b.free_bytes >= share * b.total_bytes


def _tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = ? AND NOT temporary ORDER BY 1, 2", [catalog]).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def _counts(con: duckdb.DuckDBPyConnection, catalog: str,
            tables: list[tuple[str, str]]) -> dict[str, int]:
    return {f"{s}.{t}": int(con.execute(
        f'SELECT count(*) FROM "{catalog}"."{s}"."{t}"').fetchall()[0][0]) for s, t in tables}


def compact(store: Store) -> dict[str, float]:
    """Rewrite the store into a fresh file (see the module's text). Returns the file's size
    before and after, in bytes, and the time the store was held, in ms. Raises StoreError when
    the copy cannot be made; the store is then unchanged and open."""
    path = store.path
    with store.lock:  # writers wait throughout; readers only for the checkpoint and the swap
        t0 = time.monotonic()  # held from here: the wait for the lock is not the compaction's
        con = store.con
        with store.readers.exclusive():  # DuckDB refuses a checkpoint while a reader runs
            con.execute("CHECKPOINT")
        before = store.size_bytes()
        catalog = str(con.execute("SELECT current_database()").fetchall()[0][0])
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{path.name}.compact-", dir=path.parent))
        except OSError as exc:
            raise StoreError(f"cannot compact metrics store {path}: no room for the copy "
                             f"beside it ({exc.strerror}); the store is unchanged") from None
        copy = work / path.name
        try:
            try:
                con.execute(f"DETACH DATABASE IF EXISTS {ALIAS}")  # left by a failed DETACH
                con.execute(f"ATTACH '{_quoted(copy)}' AS {ALIAS}")
                try:
                    con.execute(f"COPY FROM DATABASE \"{catalog}\" TO {ALIAS}")
                    tables = _tables(con, catalog)
                    mine, theirs = _counts(con, catalog, tables), _counts(con, ALIAS, tables)
                finally:
                    con.execute(f"DETACH {ALIAS}")
            except Exception as exc:  # noqa: BLE001  any failure of the copy leaves the store as it was
                raise StoreError(f"cannot compact metrics store {path}: the copy failed "
                                 f"({type(exc).__name__}: {exc}); the store is unchanged") from None
            if mine != theirs:
                differ = sorted(k for k in mine if mine[k] != theirs.get(k))
                raise StoreError(f"cannot compact metrics store {path}: the copy's rows differ "
                                 f"in {', '.join(differ)}; the store is unchanged")
            if copy.with_name(copy.name + ".wal").exists():
                raise StoreError(f"cannot compact metrics store {path}: the copy kept a WAL; "
                                 "the store is unchanged")
            try:
                os.chmod(copy, 0o600)
                fsync_file(copy)
                with store.readers.exclusive():
                    store.replace_file(copy)  # reopens the old file if the rename fails
            except OSError as exc:
                raise StoreError(f"cannot compact metrics store {path}: the copy could not take "
                                 f"its place ({exc}); the store is unchanged") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        after = store.size_bytes()
        held_ms = (time.monotonic() - t0) * 1000
    log.info("store.compacted", before_bytes=before, after_bytes=after,
             held_ms=round(held_ms, 1))
    return {"before_bytes": float(before), "after_bytes": float(after), "held_ms": held_ms}


def _quoted(path: Path) -> str:
    """A path as a SQL string literal's body."""
    return str(path).replace("'", "''")
