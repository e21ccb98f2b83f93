"""CPU: total and per-core busy ratio, iowait ratio and load average.

Ratios come from ``psutil.cpu_times`` deltas between two calls (never a blocking interval), so
the first call after start reports only the load average and the core count.
"""

from __future__ import annotations

import os

import psutil

from lightkeeper.collectors.base import Triple


def _busy_and_total(t: object) -> tuple[float, float, float]:
    """(busy, iowait, total) seconds of one ``scputimes``; guest time is already in user/nice."""
    fields = t._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, fields.get("iowait", 0.0), total


class CpuCollector:
    name = "cpu"

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._prev: dict[str, tuple[float, float, float]] = {}

    def _ratios(self, label: str, times: object) -> tuple[float, float] | None:
        busy, iowait, total = _busy_and_total(times)
        prev = self._prev.get(label)
        self._prev[label] = (busy, iowait, total)
        if prev is None:
            return None
        d_total = total - prev[2]
        if d_total <= 0:
            return None
        usage = min(max((busy - prev[0]) / d_total, 0.0), 1.0)
        wait = min(max((iowait - prev[1]) / d_total, 0.0), 1.0)
        return usage, wait

    def collect(self) -> list[Triple]:
        out: list[Triple] = []
        total = self._ratios("", psutil.cpu_times())
        if total is not None:
            out.append(("cpu_usage_ratio", "", total[0]))
            out.append(("cpu_iowait_ratio", "", total[1]))
        for i, times in enumerate(psutil.cpu_times(percpu=True)):
            ratios = self._ratios(f"cpu{i}", times)
            if ratios is not None:
                out.append(("cpu_usage_ratio", f"cpu{i}", ratios[0]))
        load1, load5, load15 = os.getloadavg()
        out += [("cpu_load_average", "1m", load1), ("cpu_load_average", "5m", load5),
                ("cpu_load_average", "15m", load15),
                ("cpu_cores", "", float(psutil.cpu_count() or 1))]
        return out

    def close(self) -> None:
        pass
