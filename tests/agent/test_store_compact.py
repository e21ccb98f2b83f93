"""Compacting the metrics store (agent.store.compact): a fresh copy replaces a file that retention
deletes left full of free blocks, nothing is lost, and a copy that fails leaves the store as
it was."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.agent.store import compact
from lightkeeper.agent.store.db import Store, StoreError

NOW = 1_800_000_000.0
HOUR = 3600.0


def _checkpointed_hours(s: Store, start: float, hours: int, rows: int = 100_000) -> None:
    """``rows`` samples in each of ``hours`` hours from ``start``, each hour checkpointed."""
    for h in range(hours):
        s.add_samples([(start + h * HOUR + i * 0.01, f"m{i % 7}", f"u{i % 997}", float(i))
                       for i in range(rows)])
        s.flush()
        s.checkpoint()


def _bloated(path: Path, hours: int = 5) -> Store:
    """A store whose oldest samples were deleted after they were checkpointed (as retention
    does): their blocks are free and stay in the file."""
    s = Store(path)
    _checkpointed_hours(s, NOW - 10 * HOUR, hours)
    for i in range(40):
        s.add_event("audit", "test.event", context={"i": i})
    s.execute("DELETE FROM samples WHERE ts < ?", [NOW - 10 * HOUR + (hours - 2) * HOUR])
    s.checkpoint()
    return s


def _contents(s: Store) -> dict[str, Any]:
    return {
        "samples": s.read("SELECT count(*), sum(value), min(ts), max(ts) FROM samples"),
        "events": s.read("SELECT id, event, context FROM events ORDER BY id"),
        "schema": s.schema_version(),
    }


def test_a_compaction_gives_back_the_free_blocks_and_keeps_every_row(tmp_path: Path) -> None:
    s = _bloated(tmp_path / "m.duckdb")
    before = compact.blocks(s)
    assert before.free_bytes >= 0.3 * before.total_bytes  # what retention deletes leave behind
    assert compact.due(before, None, None, share=0.3, min_free=0) == "reclaim"
    kept = _contents(s)
    size = s.size_bytes()

    done = compact.compact(s)

    after = compact.blocks(s)
    assert after.free == 0
    assert done["before_bytes"] == size
    assert done["after_bytes"] == s.size_bytes() <= size - before.free_bytes
    assert _contents(s) == kept  # the same rows, read through the reading cursors
    # the store goes on: its sequences continue and its writer and readers work
    new_id = s.add_event("audit", "after.compaction")
    assert new_id == max(r[0] for r in kept["events"]) + 1
    s.add_samples([(NOW, "m0", "u0", 1.0)])
    assert s.flush() == 1
    assert s.read("SELECT count(*) FROM samples WHERE ts = ?", [NOW])[0][0] == 1
    assert os.stat(s.path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) in (["m.duckdb"], ["m.duckdb",
                                                                        "m.duckdb.wal"])
    s.close()
    reopened = Store(tmp_path / "m.duckdb")  # the new file is a whole store
    assert reopened.read("SELECT count(*) FROM events")[0][0] == len(kept["events"]) + 1
    reopened.close()


def test_compaction_is_due_only_past_both_thresholds() -> None:
    mib = 1024 * 1024
    b = compact.FileBlocks(block_size=256 * 1024, used=60, free=40)  # 10 MiB free of 25
    packed = compact.Packed(bytes=15 * mib, rows=100)  # the used blocks hold live data only
    assert compact.due(b, packed, 100, share=0.3, min_free=8 * mib) == "reclaim"
    assert compact.due(b, packed, 100, share=0.5, min_free=0) is None  # 40 % free, not half
    assert compact.due(b, packed, 100, share=0.3, min_free=16 * mib) is None  # 10 MiB, not 16
    assert compact.due(b, packed, 100, share=0.0, min_free=0) is None  # 0 turns it off
    assert compact.due(b, None, None, share=0.3, min_free=8 * mib) == "reclaim"  # free alone


def test_dead_space_in_used_blocks_counts_once_the_packed_size_is_known() -> None:
    """2.5 MiB free of 25: not worth a copy on free blocks alone. The last compaction left 10
    MiB for 1,000,000 rows and the store holds 1,100,000 now, about 11 MiB of live data: the
    copy would give back about 14 MiB."""
    mib = 1024 * 1024
    b = compact.FileBlocks(block_size=256 * 1024, used=90, free=10)
    packed = compact.Packed(bytes=10 * mib, rows=1_000_000)
    assert compact.reclaimable(b, None, None) == b.free_bytes
    assert compact.reclaimable(b, packed, 1_100_000) == 25 * mib - 11 * mib
    assert compact.due(b, packed, 1_100_000, share=0.3, min_free=2 * mib) == "reclaim"
    assert compact.due(b, packed, 2_400_000, share=0.3, min_free=2 * mib) is None  # 24 MiB live
    # a store with no compaction on record: the first copy, once the file is large enough that
    # a reclaim could be due at all (min_free / share), measures its packed size
    assert compact.due(b, None, None, share=0.3, min_free=2 * mib) == "first"
    assert compact.due(b, None, None, share=0.3, min_free=8 * mib) is None  # 25 < 8 / 0.3
    assert compact.due(b, packed, 2_400_000, share=0.0, min_free=0) is None


def test_the_estimate_matches_what_a_copy_gives_back(tmp_path: Path) -> None:
    """The agent's pattern (each flush checkpointed, retention deleting the oldest rows): after
    a first compaction, the estimate from its bytes per row is what the next copy gives back,
    within 30 % or two blocks."""
    s = Store(tmp_path / "m.duckdb")

    def minutes(start: float, n: int, rows: int = 3000) -> None:
        for k in range(n):
            t = start + k * 60
            s.add_samples([(t + i * 0.001, f"m{i % 7}", f"u{i % 97}", float(i))
                           for i in range(rows)])
            s.flush()
            s.checkpoint()
            s.execute("DELETE FROM samples WHERE ts < ?", [t - 40 * 60])

    minutes(NOW, 60)
    done = compact.compact(s)
    packed = compact.Packed(int(done["packed_bytes"]), int(done["rows"]))
    assert packed.rows == compact.rows(s) > s.read("SELECT count(*) FROM samples")[0][0] > 0
    assert packed.bytes == compact.blocks(s).total_bytes
    assert compact.last_compaction(s) == (-float("inf"), None)  # the agent records the event
    minutes(NOW + 3600, 80)
    s.checkpoint()
    b = compact.blocks(s)
    estimate = compact.reclaimable(b, packed, compact.rows(s))
    real = b.total_bytes - compact.compact(s)["packed_bytes"]
    assert real > 0
    assert abs(estimate - real) <= max(0.3 * real, 2 * b.block_size), (estimate, real)
    s.close()


def test_the_last_compaction_is_read_from_its_event(tmp_path: Path) -> None:
    """An agent that starts again knows when the store was last compacted and what that left;
    an event from before the record said so gives the time alone."""
    s = Store(tmp_path / "m.duckdb")
    s.add_event("audit", "store.compacted", ts=NOW - 100, context={"after_bytes": 1})
    assert compact.last_compaction(s) == (NOW - 100, None)
    s.add_event("audit", "store.compacted", ts=NOW,
                context={"packed_bytes": 4096, "rows": 12})
    s.add_event("audit", "store.compaction_failed", ts=NOW + 5, context={"error": "full"})
    assert compact.last_compaction(s) == (NOW, compact.Packed(4096, 12))
    s.close()


def _fill(mnt: Path, leave: int = 0) -> Path:
    """Fill the file system at ``mnt`` until ``leave`` bytes are free (0: until it is full)."""
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        try:
            while (free := shutil.disk_usage(mnt).free) > leave:
                fh.write(b"\0" * max(4096, min(65536, free - leave)))
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_copy_that_would_fill_the_disk_is_not_started(small_disk: Any) -> None:
    """The store shares its file system with users' data: a copy that would leave less than
    its reserve free is refused before it writes anything, and made once there is room."""
    mnt = small_disk(24)
    s = _bloated(mnt / "m.duckdb")
    kept = _contents(s)
    size = s.size_bytes()
    used = compact.blocks(s).used * compact.blocks(s).block_size
    reserve = int(compact.RESERVE_SHARE * 24 * 1024 * 1024)
    filler = _fill(mnt, leave=used + reserve // 2)  # room for the copy, not for the reserve too
    free = shutil.disk_usage(mnt).free
    with pytest.raises(StoreError, match="no room for the copy beside it.*MiB left free"):
        compact.compact(s)
    assert shutil.disk_usage(mnt).free == free  # nothing was written
    assert sorted(p.name for p in mnt.iterdir()) == ["filler", "m.duckdb"]
    assert s.size_bytes() == size and _contents(s) == kept
    filler.unlink()
    compact.compact(s)  # with room, the same store compacts
    assert compact.blocks(s).free == 0
    assert _contents(s)["samples"] == kept["samples"]
    s.close()


def test_a_copy_that_fails_on_a_full_disk_leaves_the_store_as_it_was(
        small_disk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the copy is written (the room check passed, then another process
    wrote): DuckDB's failure leaves the store as it was and no copy behind."""
    mnt = small_disk(24)
    s = _bloated(mnt / "m.duckdb")
    kept = _contents(s)
    size = s.size_bytes()
    filler = _fill(mnt)
    monkeypatch.setattr(compact, "check_room", lambda path, need: None)
    with pytest.raises(StoreError, match="the copy failed.*the store is unchanged"):
        compact.compact(s)
    assert sorted(p.name for p in mnt.iterdir()) == ["filler", "m.duckdb"]  # no copy left
    assert s.size_bytes() == size
    assert _contents(s) == kept
    filler.unlink()
    s.add_event("audit", "after.failure")  # still open and writable
    compact.compact(s)  # with room, the same store compacts
    assert compact.blocks(s).free == 0
    assert _contents(s)["samples"] == kept["samples"]
    s.close()


def test_no_room_for_the_copys_directory_is_a_store_error(small_disk: Any) -> None:
    """Out of inodes beside the store (its directory cannot get the copy's directory): the
    agent's maintenance gets a StoreError it reports, and the store stays open."""
    mnt = small_disk(24, inodes=64)
    s = _bloated(mnt / "m.duckdb", hours=3)
    kept = _contents(s)
    n = 0
    try:
        while True:
            (mnt / f"f{n}").touch()
            n += 1
    except OSError:
        pass
    with pytest.raises(StoreError, match="no room for the copy.*the store is unchanged"):
        compact.compact(s)
    assert _contents(s) == kept
    s.close()


def test_the_agent_compacts_its_store_after_retention_and_says_so(start_agent: Any,
                                                                   lk_env: dict[str, str]) -> None:
    """A store whose old samples the agent's retention deletes at its first maintenance pass:
    the pass compacts it (store.compact_* lowered to this small store), records the event, and
    the agent goes on writing and answering on the new file."""
    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    path = state / "metrics.duckdb"
    s = Store(path)
    _checkpointed_hours(s, time.time() - 10 * 86400, 4)  # older than the raw samples' 48 h
    s.close()
    agent = start_agent({"LIGHTKEEPER_STORE__COMPACT_MIN_FREE_MB": "1",
                         "LIGHTKEEPER_STORE__MAINTENANCE_INTERVAL": "1"})
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = agent.client.events(kind="audit", q="store.compacted")
        time.sleep(0.3)
    assert found, agent.output()
    ctx = found[0]["context"]
    assert ctx["after_bytes"] < ctx["before_bytes"]
    assert ctx["free_bytes"] > 0 and ctx["reason"] == "reclaim"
    assert 0 < ctx["packed_bytes"] <= ctx["after_bytes"] and ctx["rows"] > 0  # the estimate's base
    # the agent goes on: its collectors' samples land in the new file and are read back
    written = agent.client.call("store.stats")["rows_written"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = agent.client.call("store.stats")
        if stats["rows_written"] > written:
            break
        time.sleep(0.3)
    assert stats["rows_written"] > written and stats["last_write_error"] is None
    assert stats["rows"]["samples"] > 0
    assert not [p for p in state.iterdir() if ".compact-" in p.name]


def test_reads_go_on_while_the_copy_is_made(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Only writers wait for the whole compaction: a console's read made while the copy is
    being checked (between the copy and the swap) answers, from the store as it was."""
    s = _bloated(tmp_path / "m.duckdb", hours=3)
    want = s.read("SELECT count(*) FROM samples")[0][0]
    answers: list[Any] = []
    real_counts = compact._counts

    def counts_with_a_reader(con: Any, catalog: str, tables: list[tuple[str, str]]) -> Any:
        if catalog != compact.ALIAS and not answers:
            reader = threading.Thread(
                target=lambda: answers.append(s.read("SELECT count(*) FROM samples")[0][0]))
            reader.start()
            reader.join(timeout=20)
            answers.append("joined" if not reader.is_alive() else "still waiting")
        return real_counts(con, catalog, tables)

    monkeypatch.setattr(compact, "_counts", counts_with_a_reader)
    compact.compact(s)
    assert answers == [want, "joined"]
    assert s.read("SELECT count(*) FROM samples")[0][0] == want
    s.close()
