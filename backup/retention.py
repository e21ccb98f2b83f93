"""Which snapshots to keep: restic's ``--keep-*`` semantics.

Snapshots are grouped by host and by what they contain (the set of users and databases), so a
one-user snapshot never pushes out the last full one. Within a group, newest first: keep-last N
keeps the N newest; keep-hourly/daily/weekly/monthly/yearly N keeps the newest snapshot of each
of the N most recent hours/days/ISO weeks/months/years that have one. A snapshot kept by any
rule is kept; the newest snapshot of each group is always kept, and so is any protected one
(the newest verified snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightkeeper.contracts.backup import KeptSnapshot

if TYPE_CHECKING:  # the agent imports this at start: the repository code loads only for a job
    from lightkeeper.backup.repository import SnapshotInfo

RULES: list[tuple[str, Callable[[time.struct_time], tuple[int, ...]]]] = [
    ("hourly", lambda t: (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour)),
    ("daily", lambda t: (t.tm_year, t.tm_mon, t.tm_mday)),
    ("weekly", lambda t: tuple(int(x) for x in time.strftime("%G %V", t).split())),
    ("monthly", lambda t: (t.tm_year, t.tm_mon)),
    ("yearly", lambda t: (t.tm_year,)),
]


@dataclass
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly,
                        self.yearly))

    def as_dict(self) -> dict[str, int]:
        return {f"keep_{k}": getattr(self, k) for k in
                ("last", "hourly", "daily", "weekly", "monthly", "yearly")}


def group_key(info: SnapshotInfo, manifest_sources: list[str]) -> str:
    return info.host + "|" + ",".join(sorted(manifest_sources))


def apply(snapshots: list[SnapshotInfo], policy: Policy, groups: dict[str, str],
          protected: AbstractSet[str] = frozenset()) -> tuple[list[KeptSnapshot], list[SnapshotInfo]]:
    """Return (kept with their reasons, removed). ``groups`` maps snapshot id -> group key."""
    by_group: dict[str, list[SnapshotInfo]] = {}
    for s in snapshots:
        by_group.setdefault(groups.get(s.id, s.host), []).append(s)
    kept: list[KeptSnapshot] = []
    removed: list[SnapshotInfo] = []
    for _, snaps in sorted(by_group.items()):
        snaps = sorted(snaps, key=lambda s: (s.time, s.id), reverse=True)
        reasons: dict[str, list[str]] = {s.id: [] for s in snaps}
        for i, s in enumerate(snaps):
            if i < policy.last:
                reasons[s.id].append("last")
        for name, bucket in RULES:
            n = getattr(policy, name)
            if n <= 0:
                continue
            seen: list[tuple[int, ...]] = []
            for s in snaps:
                b = bucket(time.localtime(s.time))
                if b in seen:
                    continue
                if len(seen) >= n:
                    break
                seen.append(b)
                reasons[s.id].append(name)
        if snaps:
            reasons[snaps[0].id].append("newest")
        for s in snaps:
            if s.id in protected:
                reasons[s.id].append("protected")
            if reasons[s.id]:
                kept.append({**s.ref(), "reasons": sorted(set(reasons[s.id]))})
            else:
                removed.append(s)
    return kept, removed
