"""Which snapshots a zone keeps. Uses the backup package's keep-* policy when it offers one,
so a zone and the local repository follow the same rules; otherwise the same restic-style
rules implemented here (keep the newest snapshot of each of the last N hours/days/...)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")

_BUCKET: dict[str, Callable[[time.struct_time], tuple[int, ...]]] = {
    "hourly": lambda t: (t.tm_year, t.tm_yday, t.tm_hour),
    "daily": lambda t: (t.tm_year, t.tm_yday),
    "weekly": lambda t: tuple(int(x) for x in time.strftime("%G %V", t).split()),
    "monthly": lambda t: (t.tm_year, t.tm_mon),
    "yearly": lambda t: (t.tm_year,),
}


def _builtin_keep(snaps: list[tuple[str, float]], keep: dict[str, int]) -> dict[str, list[str]]:
    """snapshot id -> reasons kept, for (id, time) pairs."""
    newest_first = sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True)
    reasons: dict[str, list[str]] = {}
    for i, (sid, _) in enumerate(newest_first):
        if i < keep.get("last", 0):
            reasons.setdefault(sid, []).append("last")
    for rule, bucket in _BUCKET.items():
        n = keep.get(rule, 0)
        seen: set[tuple[int, ...]] = set()
        for sid, ts in newest_first:
            if len(seen) >= n:
                break
            b = bucket(time.gmtime(ts))
            if b not in seen:
                seen.add(b)
                reasons.setdefault(sid, []).append(rule)
    return reasons


def select_keep(infos: Iterable[Any], keep: dict[str, int]) -> set[str]:
    """Ids of the snapshots to keep among ``infos`` (objects with ``id`` and ``time``)."""
    infos = list(infos)
    policy = _backup_policy()
    if policy is not None:
        return policy(infos, keep)
    return set(_builtin_keep([(i.id, float(i.time)) for i in infos], keep))


def _backup_policy() -> Callable[[list[Any], dict[str, int]], set[str]] | None:
    try:
        from backup import retention as backup_retention  # noqa: PLC0415
    except ImportError:
        return None
    fn = getattr(backup_retention, "select_keep", None)
    if not callable(fn):
        return None
    return lambda infos, keep: {str(getattr(x, "id", x)) for x in fn(infos, keep)}
