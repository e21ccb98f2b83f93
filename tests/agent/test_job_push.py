"""Push, not poll: clients learn of a job's changes and end from a long poll the agent answers
as soon as something happens; finished jobs leave the agent's memory but stay in the store."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from lightkeeper.agent.changes import ChangeFeed
from lightkeeper.agent.jobs import RECENT_FINISHED


def test_change_feed_wakes_a_waiter_from_another_thread() -> None:
    feed = ChangeFeed()

    async def scenario() -> tuple[bool, bool, bool]:
        since = feed.version
        threading.Timer(0.05, feed.notify).start()
        woken = await feed.wait(since, timeout=30)  # returns on the notify, not the timeout
        already = await feed.wait(since, timeout=30)  # a newer version answers at once
        idle = await feed.wait(feed.version, timeout=0.05)  # nothing happens: times out
        return woken, already, idle

    assert asyncio.run(scenario()) == (True, True, False)


def test_follow_job_streams_to_the_end_and_finished_jobs_leave_memory(agent: Any) -> None:
    client = agent.client
    job_id = client.start_job("verify", {})  # no repository yet: fails at once
    first = client.wait_job_change(job_id, since=-1)
    assert first["id"] == job_id and isinstance(first["version"], int)
    messages = list(client.follow_job(job_id))
    assert messages[-1]["type"] == "summary"
    final = messages[-1]["job"]
    assert final["state"] == "failed" and "repository" in (final["error"] or "")
    # a long poll on a finished job answers at once with its record
    again = client.wait_job_change(job_id, since=final["version"], timeout=30)
    assert again["state"] == "failed"
    # many finished jobs: the live table holds only running ones, the store keeps them all
    ids = []
    for _ in range(25):
        ids.append(client.start_job("verify", {}))
        assert client.wait_job(ids[-1], timeout=60)["state"] == "failed"
    status = client.status()
    assert status["jobs"]["running"] == []
    assert status["jobs"]["in_memory"] == RECENT_FINISHED < len(ids)
    listed = {j["id"] for j in client.jobs(limit=100)}
    assert set(ids) | {job_id} <= listed
    assert client.job(ids[0])["state"] == "failed"  # read back from the store
