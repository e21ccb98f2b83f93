"""The agent's maintenance pass: retention deletes at most every RETENTION_INTERVAL of the wall
clock, at the first pass, and again at once when the clock went back."""

from __future__ import annotations

import time
from typing import Any

import pytest


def test_retention_runs_at_most_once_an_interval(lk_cfg: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from lightkeeper.agent import daemon

    wall = [time.time()]

    class Clock:  # the daemon's time module, its wall clock set by the test
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def time(self) -> float:
            return wall[0]

    monkeypatch.setattr(daemon, "time", Clock())
    agent = daemon.Agent(lk_cfg)
    agent.open()
    assert agent.store is not None
    store = agent.store

    def old_event() -> None:  # older than any events retention
        store.execute("INSERT INTO events (ts, level, kind, component, event) "
                      "VALUES (?, 'info', 'audit', 'test', 'old')", [wall[0] - 400 * 86400])

    def held() -> int:
        return int(store.read("SELECT count(*) FROM events WHERE event = 'old'")[0][0])

    try:
        old_event()
        agent._maintain()  # the first pass deletes
        assert held() == 0 and agent.maintenance["deleted"]["events"] == 1
        old_event()
        wall[0] += 60  # the next pass, a minute on: retention not due
        agent._maintain()
        assert held() == 1 and agent.maintenance["deleted"] == {}
        wall[0] += daemon.RETENTION_INTERVAL - 60  # an interval after the last deletes
        agent._maintain()
        assert held() == 0
        old_event()
        wall[0] -= 3600  # the clock went back: the next due time is no guide
        agent._maintain()
        assert held() == 0
    finally:
        agent.close()
