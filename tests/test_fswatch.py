"""The event loop's file watcher (``lightkeeper.fswatch.watch_from_loop``) on a real directory."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest

from lightkeeper import fswatch


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("watch:")]


def test_changes_arrive_merged_and_closing_ends_the_thread(tmp_path: Path) -> None:
    async def main() -> list[set[str]]:
        seen: list[set[str]] = []
        async with contextlib.aclosing(
                fswatch.watch_from_loop(tmp_path, debounce_ms=50, timeout_ms=200)) as it:
            async for changes in it:
                names = {Path(p).name for _, p in changes}
                if not seen:  # the first (empty) batch: the watch is running
                    seen.append(names)
                    (tmp_path / "a.jsonl").write_text("1\n")
                elif names and len(seen) == 1:
                    seen.append(names)
                    # two writes, each seen by the thread while the consumer is busy
                    (tmp_path / "b.jsonl").write_text("2\n")
                    await asyncio.sleep(1.2)
                    (tmp_path / "c.jsonl").write_text("3\n")
                    await asyncio.sleep(1.2)
                elif names:
                    seen.append(names)
                    break
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 20))
    assert seen[:2] == [set(), {"a.jsonl"}]
    assert seen[2] == {"b.jsonl", "c.jsonl"}  # one batch: merged
    for t in _watch_threads():
        t.join(fswatch.STEP_MS / 1000 * 4)
    assert not _watch_threads()


def test_quiet_directory_yields_empty_batches_on_the_timeout(tmp_path: Path) -> None:
    async def main() -> set[object]:
        async with contextlib.aclosing(
                fswatch.watch_from_loop(tmp_path, debounce_ms=50, timeout_ms=200)) as it:
            async for changes in it:
                return set(changes)
        raise AssertionError("the watch ended")

    assert asyncio.run(asyncio.wait_for(main(), 20)) == set()


def test_a_missing_directory_raises_in_the_consumer(tmp_path: Path) -> None:
    async def main() -> None:
        async for _ in fswatch.watch_from_loop(tmp_path / "gone", debounce_ms=50):
            raise AssertionError("a batch from a missing directory")

    with pytest.raises(FileNotFoundError):
        asyncio.run(asyncio.wait_for(main(), 20))


def test_cancelling_the_consumer_stops_the_watch(tmp_path: Path) -> None:
    async def consume() -> None:
        async for _ in fswatch.watch_from_loop(tmp_path, debounce_ms=50):
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert _watch_threads()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    for t in _watch_threads():
        t.join(fswatch.STEP_MS / 1000 * 4)
    assert not _watch_threads()
