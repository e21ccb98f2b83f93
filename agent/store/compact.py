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
checkpointed first, so it has no WAL to lose). A copy that would leave the file system with less
than a tenth of it free (at most 64 MiB) is not started: users' data may share it.

:func:`due` decides when the copy pays, from what it would give back: the free blocks, and the
dead space inside blocks DuckDB still counts as used (a checkpoint appends each flush's rows as
a small row group of their own, and rows that retention deletes stay inside their row group's
blocks until the whole group goes). The soak bench's day-30 store held 16 MiB of used blocks
whose copy took 11.25. DuckDB does not say how much of a used block is dead, so the live data
is estimated from what the last compaction left (:class:`Packed`: its bytes per row) times the
rows the store holds now. A store with no compaction on record is compacted once it is large
enough to be worth one, which gives the estimate its first measure. Between copies the file
regains its working size (what checkpoints keep: in the soak's small store 1.5-1.7x its packed
data, within hours), so the copies bound the file's growth with uptime, not that size.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from lightkeeper.agent.store.db import Store, StoreError
from lightkeeper.backup.fsutil import NoSpace, fsync_file, require_space
from lightkeeper.logs import get_logger

log = get_logger("store.compact")

ALIAS = "lk_compacting"
# what a copy must leave free on the store's file system: this share of it, at most RESERVE_MAX
RESERVE_SHARE = 0.1
RESERVE_MAX = 64 * 1024 * 1024
MIB = 1024 * 1024


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


@dataclass(frozen=True)
class Packed:
    """What a compaction left: the fresh file's blocks, in bytes, and its tables' rows."""
    bytes: int
    rows: int

    def live_bytes(self, rows: int) -> int:
        """The bytes ``rows`` rows take once packed, at this compaction's bytes per row."""
        return round(self.bytes * rows / self.rows) if self.rows > 0 else 0


def last_compaction(store: Store) -> tuple[float, Packed | None]:
    """When the store was last compacted (its ``store.compacted`` event; -inf if none is kept)
    and what that left (None if the event does not say: one from before it did)."""
    found = store.read("SELECT ts, context FROM events WHERE event = 'store.compacted' "
                       "ORDER BY id DESC LIMIT 1")
    if not found:
        return -float("inf"), None
    ts, text = found[0]
    try:
        ctx = json.loads(text) if text else {}
        packed = Packed(int(ctx["packed_bytes"]), int(ctx["rows"]))
    except (ValueError, TypeError, KeyError):
        packed = None
    return float(ts), packed


def rows(store: Store) -> int:
    """Every table's rows, in all (for :meth:`Packed.live_bytes`), read as the console reads."""
    catalog = str(store.read("SELECT current_database()")[0][0])
    return sum(_counts(store.read, catalog, _tables(store.read, catalog)).values())


def reclaimable(b: FileBlocks, packed: Packed | None, live_rows: int | None) -> int:
    """What a copy would give back, in bytes: the free blocks, or, where the last compaction is
    known, the file beyond its live data's packed size (free blocks and dead space in used
    ones), whichever is larger."""
    gain = b.free_bytes
    if packed is not None and live_rows is not None:
        gain = max(gain, b.total_bytes - packed.live_bytes(live_rows))
    return gain


def due(b: FileBlocks, packed: Packed | None, live_rows: int | None, share: float,
        min_free: int) -> str | None:
    """Why a copy of the store pays now, or None. ``"reclaim"``: it would give back at least
    ``share`` of the file (0: never) and ``min_free`` bytes (:func:`reclaimable`). ``"first"``:
    no compaction is known and the file is at least ``min_free / share``, as large as a file
    whose reclaim would be due; the copy measures the store's packed size."""
    if share <= 0:
        return None
    gain = reclaimable(b, packed, live_rows)
    if gain >= min_free and gain >= share * b.total_bytes:
        return "reclaim"
    if packed is None and b.total_bytes >= max(min_free, 1) / share:
        return "first"
    return None


# a query's rows: the compaction's own connection, or Store.read (a reading cursor)
Query = Callable[[str, list[Any]], list[tuple[Any, ...]]]


def _on(con: duckdb.DuckDBPyConnection) -> Query:
    return lambda sql, params: con.execute(sql, params).fetchall()


def _tables(query: Query, catalog: str) -> list[tuple[str, str]]:
    found = query("SELECT schema_name, table_name FROM duckdb_tables() "
                  "WHERE database_name = ? AND NOT temporary ORDER BY 1, 2", [catalog])
    return [(str(s), str(t)) for s, t in found]


def _counts(query: Query, catalog: str, tables: list[tuple[str, str]]) -> dict[str, int]:
    return {f"{s}.{t}": int(query(f'SELECT count(*) FROM "{catalog}"."{s}"."{t}"', [])[0][0])
            for s, t in tables}


def check_room(path: Path, need: int) -> None:
    """Refuse a copy of ``need`` bytes that would take the store's file system below its
    reserve (:data:`RESERVE_SHARE`, at most :data:`RESERVE_MAX`): the store shares it with
    files that must not meet a full disk for a compaction's sake (users' data, logs)."""
    try:
        reserve = min(RESERVE_MAX, int(RESERVE_SHARE * shutil.disk_usage(path.parent).total))
        require_space(path.parent, need + reserve,
                      f"a copy of the store with {reserve / MIB:.1f} MiB left free")
    except NoSpace as exc:
        raise StoreError(f"cannot compact metrics store {path}: no room for the copy beside it "
                         f"({exc.strerror}); the store is unchanged") from None
    except OSError as exc:
        raise StoreError(f"cannot compact metrics store {path}: its directory cannot be "
                         f"measured ({exc.strerror}); the store is unchanged") from None


def compact(store: Store) -> dict[str, float]:
    """Rewrite the store into a fresh file (see the module's text). Returns the file's size
    before and after, in bytes, the new file's blocks and rows (a :class:`Packed`'s
    ``packed_bytes`` and ``rows``), and the time the store was held, in ms. Raises StoreError
    when the copy cannot be made; the store is then unchanged and open."""
    path = store.path
    with store.lock:  # writers wait throughout; readers only for the checkpoint and the swap
        t0 = time.monotonic()  # held from here: the wait for the lock is not the compaction's
        con = store.con
        with store.readers.exclusive():  # DuckDB refuses a checkpoint while a reader runs
            con.execute("CHECKPOINT")
        before = store.size_bytes()
        b = blocks(store)
        check_room(path, b.used * b.block_size)  # the copy holds the used blocks' data at most
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
                    tables = _tables(_on(con), catalog)
                    mine = _counts(_on(con), catalog, tables)
                    theirs = _counts(_on(con), ALIAS, tables)
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
        packed = blocks(store).total_bytes
        held_ms = (time.monotonic() - t0) * 1000
    log.info("store.compacted", before_bytes=before, after_bytes=after,
             held_ms=round(held_ms, 1))
    return {"before_bytes": float(before), "after_bytes": float(after),
            "packed_bytes": float(packed), "rows": float(sum(theirs.values())),
            "held_ms": held_ms}


def _quoted(path: Path) -> str:
    """A path as a SQL string literal's body."""
    return str(path).replace("'", "''")
