"""The agent's loops wake on multiples of their interval (agent.daemon.until_tick), so loops of
the same interval run together and one flush takes a round's samples."""

from __future__ import annotations

import pytest

from lightkeeper.agent.daemon import until_tick


@pytest.mark.parametrize(("interval", "now", "wait"), [
    (5.0, 12.0, 3.0),        # the next multiple of 5
    (5.0, 10.0, 5.0),        # on a tick: the next one, a whole interval on
    (5.0, 14.99, 5.01),      # closer than 50 ms: that tick is skipped, not run twice
    (2.0, 10.5, 1.5),
    (60.0, 125.0, 55.0),
    (0.1, 7.02, 0.08),
])
def test_until_tick(interval: float, now: float, wait: float) -> None:
    assert until_tick(interval, now) == pytest.approx(wait)


def test_loops_of_one_interval_meet_whatever_their_phase() -> None:
    """Two loops started at different moments, each of a round of different length, wake at
    the same instants from their first tick on."""
    for start_a, start_b, work_a, work_b in [(0.3, 3.7, 0.01, 0.9), (1.0, 1.001, 2.0, 0.0)]:
        a = start_a + work_a + until_tick(5.0, start_a + work_a)
        b = start_b + work_b + until_tick(5.0, start_b + work_b)
        assert a == pytest.approx(b) == pytest.approx(5.0)
