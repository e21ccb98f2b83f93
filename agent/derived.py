"""Gauges computed when they are read, from the timestamp they derive from.

An age or a lag stored as a value goes stale between the events that set it (a backup, a zone
sync or probe): ``lightkeeper_zone_lag_seconds`` read 0 while the zone had been missing a
snapshot for minutes. The agent keeps the *timestamp* (when the newest backup succeeded, when
the oldest snapshot a zone lacks was taken) and every reader (alert evaluation, ``/metrics``,
``metrics.latest``) gets the gauge computed at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Collection

# gauge -> the timestamp it is computed from; a timestamp of 0 means "nothing pending" (gauge 0)
DERIVED: dict[str, str] = {
    "backup_age_seconds": "backup_last_success_timestamp_seconds",
    "backup_drill_age_seconds": "backup_drill_last_success_timestamp_seconds",
    "zone_lag_seconds": "zone_oldest_unreplicated_timestamp_seconds",
}
_SOURCES = {source: gauge for gauge, source in DERIVED.items()}

Current = dict[tuple[str, str], tuple[float, float]]


def with_derived(current: Current, now: float | None = None,
                 only: Collection[str] | None = None) -> Current:
    """A copy of ``current`` ((metric, label) -> (ts, value)) with every derived gauge computed
    for ``now`` from its timestamp (and dropped where its timestamp is unknown); with ``only``,
    the entries of those metrics alone (the alert rules': not the thousands of per-user series
    the alert evaluation would copy and skip every 5 s)."""
    now = time.time() if now is None else now
    out: Current = {}
    for key, tv in current.items():
        metric = key[0]
        if metric in DERIVED:
            continue  # computed below from its timestamp
        if only is None or metric in only:
            out[key] = tv
        gauge = _SOURCES.get(metric)
        value = tv[1]
        if gauge is None or value is None or (only is not None and gauge not in only):
            continue
        out[(gauge, key[1])] = (now, max(0.0, now - value) if value > 0 else 0.0)
    return out
