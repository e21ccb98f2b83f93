"""Changes pushed by topic: ``changes.wait`` answers as soon as a topic the client follows
moves (a job, a tuning change, an event), after its timeout when none does, at once for another
agent run; bad requests get a clear error."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lightkeeper.agent.changes import TopicFeed
from lightkeeper.client import AgentError
from lightkeeper.contracts.changes import TOPICS
from tests.test_contracts import check_answer, response_type

QUIET = ("backups", "config", "zones")  # topics an idle test agent never moves (tuning does
# once at start, when the agent initializes the active file)


def test_topic_feed_wakes_on_a_followed_topic_only() -> None:
    feed = TopicFeed()

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        start = feed.versions()
        threading.Timer(0.05, feed.notify, args=("samples",)).start()
        threading.Timer(0.1, feed.notify, args=("jobs", "events")).start()
        woken = await feed.moved({"jobs": start["jobs"], "tuning": start["tuning"]}, 30)
        idle = await feed.moved({"tuning": start["tuning"]}, 0.05)  # nothing moved it
        restarted = await feed.moved({"jobs": feed.versions()["jobs"] + 5}, 30)  # newer: moved
        samples = await feed.moved({"samples": start["samples"]}, 30)  # moved before: at once
        return woken, idle, restarted, samples

    assert asyncio.run(scenario()) == (["jobs"], [], ["jobs"], ["samples"])
    with pytest.raises(ValueError, match="unknown change topics"):
        feed.notify("nonsense")


def _wait(client: Any, since: dict[str, int], **kw: Any) -> dict[str, Any]:
    answer = client.wait_changes(since, **kw)
    check_answer(response_type("changes.wait"), answer, "changes.wait")
    return answer


def test_changes_wait_against_a_real_agent(agent: Any) -> None:
    client = agent.client
    first = _wait(client, {}, timeout=30)  # nothing followed: answers at once
    assert set(first["versions"]) == set(TOPICS) and first["moved"] == []
    epoch, versions = first["epoch"], first["versions"]

    # nothing moves the quiet topics: the answer comes after the timeout, empty
    quiet = {t: versions[t] for t in QUIET}
    assert _wait(client, quiet, epoch=epoch, timeout=0.3)["moved"] == []

    with ThreadPoolExecutor(1) as pool:
        # a job started while a client waits on the job list
        waiting = pool.submit(_wait, client, {"jobs": versions["jobs"], **quiet}, epoch=epoch,
                              timeout=60)
        client.start_job("verify", {})  # no repository: it fails at once
        moved = waiting.result(timeout=90)
        assert "jobs" in moved["moved"]
        # a tuning change: the tuning topic moves, and its audit event the events topic
        now = moved["versions"]
        waiting = pool.submit(_wait, client, {"tuning": now["tuning"]}, epoch=epoch,
                              timeout=60)
        client.call("tuning.set", changes={"top_k": 41}, note="push test", actor="t")
        assert waiting.result(timeout=90)["moved"] == ["tuning"]
    after = _wait(client, {"events": now["events"]}, epoch=epoch, timeout=30)
    assert after["moved"] == ["events"]

    # a client that holds another agent run's versions re-reads everything, at once
    other = _wait(client, quiet, epoch="another-run", timeout=60)
    assert sorted(other["moved"]) == sorted(QUIET) and other["epoch"] == epoch


@pytest.mark.parametrize("params, message", [
    ({"since": {"nonsense": 1}}, "unknown change topics"),
    ({"since": {"jobs": -1}}, "must be a version"),
    ({"since": {"jobs": "1"}}, "must be a version"),
    ({"since": [1]}, "since must be an object"),
    ({"since": {"jobs": 0}, "timeout": 3600}, "timeout must be a number between 0 and 60"),
    ({"epoch": 5}, "epoch must be a string"),
])
def test_changes_wait_refuses_bad_requests(agent: Any, params: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(AgentError, match=message) as info:
        agent.client.call("changes.wait", **params)
    assert info.value.status == 400


def test_a_stopping_agent_answers_waiting_long_polls(agent: Any) -> None:
    """A console's long poll (up to 60 s) must not hold the agent's shutdown: the agent answers
    it and exits cleanly, instead of waiting it out and being killed by the service manager."""
    client = agent.client
    versions = _wait(client, {}, timeout=30)["versions"]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_wait, client, {t: versions[t] for t in QUIET}, timeout=60)
        time.sleep(2.0)  # the poll reaches the agent (nothing moves the quiet topics)
        assert not waiting.done()
        # agent.stop() waits 30 s for the exit, then kills (exit -9): the poll asks for 60 s
        assert agent.stop() == 0
        assert waiting.result(timeout=30)["moved"] == []
