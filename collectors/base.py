"""The collector contract. Collectors never import Textual or DuckDB.

A collector has a ``name`` and an ``interval`` (seconds) and returns samples from ``collect()``:
``(metric, label, value)`` triples, stamped by the caller. Metric names follow Prometheus rules
(base units, ``_bytes``, ``_seconds``, ``_ratio``/``_percent`` spelled out, ``_total`` only for
counters) and the label is one bounded dimension (a mount, an interface, a core, a user, a pid),
or "" when there is none. Rates are computed by the collector from counters between two calls
(see ``RateTracker``); the first call after start reports no rate rather than a wrong one.
"""

from __future__ import annotations

import time
from typing import Protocol

Triple = tuple[str, str, float]


class Collector(Protocol):
    name: str
    interval: float

    def collect(self) -> list[Triple]: ...

    def close(self) -> None: ...


class RateTracker:
    """Per-second rates from monotonically increasing counters (wraps and resets give none)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, float]] = {}

    def rate(self, metric: str, label: str, counter: float, now: float | None = None
             ) -> float | None:
        now = time.monotonic() if now is None else now
        key = (metric, label)
        prev = self._last.get(key)
        self._last[key] = (now, counter)
        if prev is None:
            return None
        dt = now - prev[0]
        dv = counter - prev[1]
        if dt <= 0 or dv < 0:
            return None
        return dv / dt
