"""Snapshot tests of every screen at 80x24 and 120x40.

They render a RECORDED-DATA REPLAY (tui.replay.RecordedReplayClient over
tests/tui/recorded/demo.json, captured from a seeded real agent by
``scripts/screenshots.sh --record``) with the recording's clock and TZ=UTC, so the pictures are
the same on every run. They test rendering only; behaviour is tested against a real agent in
the other test files. After an intended change of the look: ``pytest tests/tui/test_snapshots.py
--snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightkeeper.tui.app import LightkeeperApp
from lightkeeper.tui.replay import RecordedReplayClient
from lightkeeper.tui.shots import SCREENS, show_pane

RECORDING = Path(__file__).parent / "recorded" / "demo.json"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def replay_app() -> LightkeeperApp:
    client = RecordedReplayClient(RECORDING)
    return LightkeeperApp(client, clock=lambda: client.now, live=False, window="5m")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("screen,key", SCREENS, ids=[s for s, _ in SCREENS])
def test_screen(snap_compare, screen: str, key: str, size: tuple[int, int]) -> None:
    async def show(pilot) -> None:
        await show_pane(pilot, pilot.app, screen, key)

    assert snap_compare(replay_app(), terminal_size=size, run_before=show)


def test_replay_refuses_actions() -> None:
    from lightkeeper.client import AgentError

    client = RecordedReplayClient(RECORDING)
    with pytest.raises(AgentError, match="recorded-data replay"):
        client.start_job("backup", {})
    with pytest.raises(AgentError) as info:
        client.call("no.such.call")
    assert info.value.code == "unknown_call"


def test_replayed_zone_chart_has_lag_history() -> None:
    """The recording holds a zone's lag over time (it grew after a backup, dropped at a sync):
    the Zones snapshot shows a chart, not 'no zone status in this window'."""
    import asyncio

    from lightkeeper.tui.widgets.chart import TimeChart

    async def run() -> list[float]:
        app = replay_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await show_pane(pilot, app, "zones", "4")
            chart = app.query_one("#zn-charts", TimeChart)
            return [v for line in chart.data.lines for _ts, v in line.points if v is not None]

    values = asyncio.run(run())
    assert any(v > 0 for v in values) and values[-1] == 0, values  # lagged, now in sync
